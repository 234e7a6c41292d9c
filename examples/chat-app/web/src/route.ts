// Each conversation has its own address (#/c/<id>): reload keeps it, back and forward move between them.

const PATTERN = /^#\/c\/([0-9a-f-]{36})$/i;

export function conversationFromHash(hash: string): string | null {
  const m = PATTERN.exec(hash);
  return m ? m[1].toLowerCase() : null;
}

export function hashFor(conversationId: string | null): string {
  return conversationId ? `#/c/${conversationId}` : "#/";
}

// A sign-in link carries the token in the fragment (#token=…), where it never reaches a server log.
export function tokenFromHash(hash: string): string | null {
  return new URLSearchParams(hash.slice(1)).get("token");
}

// A read-only share link: #/shared/<token>. The fragment never reaches a server (or its log).
export function sharedTokenFromHash(hash: string): string | null {
  const m = /^#\/shared\/([A-Za-z0-9_\-.~%]{1,200})$/.exec(hash);
  return m ? decodeURIComponent(m[1]) : null;
}

export function sharedLink(token: string, origin: string = location.origin): string {
  return `${origin}/#/shared/${encodeURIComponent(token)}`;
}
