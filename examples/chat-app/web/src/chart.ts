// The usage chart's geometry: one group of bars per day, heights scaled to the largest value.

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  series: number;
  index: number;
  value: number;
}

export function barLayout(series: number[][], width: number, height: number, gap = 4): Bar[] {
  const days = Math.max(0, ...series.map((s) => s.length));
  const max = Math.max(1, ...series.flat());
  if (!days) return [];
  const slot = width / days;
  const barWidth = Math.max(1, (slot - gap) / series.length);
  const bars: Bar[] = [];
  series.forEach((values, s) => values.forEach((value, i) => {
    const h = Math.round((value / max) * height);
    bars.push({ x: i * slot + gap / 2 + s * barWidth, y: height - h, width: barWidth, height: h, series: s, index: i, value });
  }));
  return bars;
}

// The period's days (UTC, oldest first, ending today) as YYYY-MM-DD: days without activity get
// their place on the chart too.
export function periodDays(days: number, today: Date = new Date()): string[] {
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  return Array.from({ length: days }, (_, i) => new Date(end - (days - 1 - i) * 86_400_000).toISOString().slice(0, 10));
}
