import { barLayout, periodDays } from "../chart";
import type { Usage } from "../types";

const WIDTH = 640;
const HEIGHT = 160;
const SERIES = ["tokens stored", "LLM tokens (prompt + completion)"];

const number = (n: number | null | undefined) => (n == null ? "—" : Math.round(n).toLocaleString("en"));
const money = (n: number | null | undefined) => (n == null ? "—" : `$${Number(n).toFixed(4)}`);

// The signed-in user's usage from memory_ext's analytics views: per day, per tool, per agent.
export function UsageDashboard({ usage, days }: { usage: Usage | null; days: number }) {
  if (!usage) return <section id="usage" className="usage" aria-busy="true">Loading usage…</section>;
  const period = periodDays(days);
  const byDay = new Map(usage.days.map((d) => [d.day, d]));
  const stored = period.map((day) => byDay.get(day)?.stored_tokens ?? 0);
  const llm = period.map((day) => { const d = byDay.get(day); return d ? d.prompt_tokens + d.completion_tokens : 0; });
  const bars = barLayout([stored, llm], WIDTH, HEIGHT, 2);
  const total = (f: (d: Usage["days"][number]) => number | null) => usage.days.reduce((a, d) => a + (f(d) ?? 0), 0);
  const priced = usage.days.some((d) => d.cost_usd != null);
  return (
    <section id="usage" className="usage">
      <h2>{`Usage, last ${days} days`}</h2>
      <dl className="totals">
        <div><dt>messages</dt><dd id="total-messages">{number(total((d) => d.messages))}</dd></div>
        <div><dt>tokens stored</dt><dd>{number(total((d) => d.stored_tokens))}</dd></div>
        <div><dt>LLM calls</dt><dd id="total-calls">{number(total((d) => d.llm_calls))}</dd></div>
        <div><dt>LLM tokens</dt><dd>{number(total((d) => d.prompt_tokens + d.completion_tokens))}</dd></div>
        <div><dt>cost</dt><dd>{priced ? money(total((d) => d.cost_usd)) : "no prices set"}</dd></div>
      </dl>
      {usage.days.length ? (
        <figure className="chart">
          <svg id="usage-chart" viewBox={`0 0 ${WIDTH} ${HEIGHT + 18}`} role="img" aria-label="Tokens per day">
            {bars.map((b) => (
              <rect key={`${b.series}-${b.index}`} className={`bar s${b.series}`} x={b.x} y={b.y} width={b.width} height={b.height}>
                <title>{`${period[b.index]}: ${number(b.value)} ${SERIES[b.series]}`}</title>
              </rect>
            ))}
            <text x={0} y={HEIGHT + 14} className="axis">{period[0]}</text>
            <text x={WIDTH} y={HEIGHT + 14} className="axis" textAnchor="end">{period[period.length - 1]}</text>
          </svg>
          <figcaption>
            {SERIES.map((name, i) => <span key={name} className={`key s${i}`}>{name}</span>)}
          </figcaption>
        </figure>
      ) : <p className="empty">No activity in this period.</p>}
      <h3>Tools</h3>
      <table id="tool-usage">
        <thead><tr><th>tool</th><th>calls</th><th>results</th><th>without result</th></tr></thead>
        <tbody>
          {usage.tools.map((t) => (
            <tr key={t.tool}><td>{t.tool}</td><td>{number(t.calls)}</td><td>{number(t.results)}</td><td>{number(t.without_result)}</td></tr>
          ))}
        </tbody>
      </table>
      <h3>Agents</h3>
      <table id="agent-usage">
        <thead><tr><th>agent</th><th>LLM calls</th><th>failures</th><th>p50 ms</th><th>p95 ms</th><th>tokens / reply</th><th>cost</th></tr></thead>
        <tbody>
          {usage.agents.map((a) => (
            <tr key={a.agent_id ?? "none"}>
              <td>{a.name ?? "(no agent)"}</td><td>{number(a.llm_calls)}</td><td>{number(a.failures)}</td>
              <td>{number(a.latency_p50_ms)}</td><td>{number(a.latency_p95_ms)}</td><td>{number(a.tokens_per_reply)}</td>
              <td>{money(a.cost_usd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
