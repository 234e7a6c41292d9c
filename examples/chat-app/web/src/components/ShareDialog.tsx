import { useCallback, useEffect, useState, type FormEvent } from "react";
import type { Api } from "../api";
import { sharedLink } from "../route";
import type { Member, ShareLink } from "../types";

interface Props {
  api: Api;
  conversationId: string;
  meId: string;
  onError: (err: unknown) => void;
  onClose: () => void;
}

const short = (id: string) => `user ${id.slice(0, 8)}…`;

// Sharing one conversation: its members (offered as viewer or editor, removable) and its
// read-only links (created, shown once, revoked).
export function ShareDialog({ api, conversationId, meId, onError, onClose }: Props) {
  const [members, setMembers] = useState<Member[]>([]);
  const [links, setLinks] = useState<ShareLink[]>([]);
  const [newLink, setNewLink] = useState<string | null>(null);
  const [who, setWho] = useState("");
  const [role, setRole] = useState<"viewer" | "editor">("viewer");

  const reload = useCallback(async () => {
    try {
      const [m, l] = await Promise.all([api<{ members: Member[] }>("GET", `/conversations/${conversationId}/members`),
                                        api<{ links: ShareLink[] }>("GET", `/conversations/${conversationId}/links`)]);
      setMembers(m.members);
      setLinks(l.links);
    } catch (err) {
      onError(err);
    }
  }, [api, conversationId, onError]);
  useEffect(() => { void reload(); }, [reload]);

  async function add(e: FormEvent) {
    e.preventDefault();
    if (!who.trim()) return;
    try {
      await api("POST", `/conversations/${conversationId}/members`, { user: who.trim(), role });
      setWho("");
      await reload();
    } catch (err) {
      onError(err);
    }
  }

  async function act(run: () => Promise<unknown>) {
    try {
      await run();
      await reload();
    } catch (err) {
      onError(err);
    }
  }

  return (
    <div className="dialog-backdrop" onClick={onClose}>
      <div id="share-dialog" className="dialog" role="dialog" aria-modal="true" aria-labelledby="share-title"
           onClick={(e) => e.stopPropagation()} onKeyDown={(e) => { if (e.key === "Escape") onClose(); }}>
        <h3 id="share-title">Share this conversation</h3>
        <form id="share-form" className="share-form" onSubmit={(e) => void add(e)}>
          <input id="share-user" value={who} onChange={(e) => setWho(e.target.value)} placeholder="user name (alice, bob…)"
                 aria-label="User to share with" maxLength={100} autoFocus />
          <select id="share-role" value={role} onChange={(e) => setRole(e.target.value as "viewer" | "editor")} aria-label="Role">
            <option value="viewer">viewer (reads)</option>
            <option value="editor">editor (also writes)</option>
          </select>
          <button id="share-add" className="primary">Share</button>
        </form>
        <p className="note">Your first shares with a user take effect at once; past a limit they wait as offers the user accepts.</p>
        <ul id="members" className="rows">
          {members.map((m) => (
            <li key={m.user_id} data-user-id={m.user_id}>
              <span>{m.user_id === meId ? "you" : short(m.user_id)}</span>
              <span className="role">{m.role}</span>
              {m.role !== "owner" ? (
                <button type="button" className="link danger remove"
                        onClick={() => void act(() => api("DELETE", `/conversations/${conversationId}/members/${m.user_id}`))}>
                  remove
                </button>
              ) : null}
            </li>
          ))}
        </ul>
        <h4>Read-only links</h4>
        <button id="link-create" type="button" className="link" onClick={() => void act(async () => {
          const { token } = await api<{ token: string }>("POST", `/conversations/${conversationId}/links`);
          setNewLink(sharedLink(token));
        })}>create a link to the conversation as it is now</button>
        {newLink ? (
          <div className="new-link">
            <input id="link-url" readOnly value={newLink} aria-label="The new link (shown once)" onFocus={(e) => e.target.select()} />
            <span className="note">Shown once: copy it now.</span>
          </div>
        ) : null}
        <ul id="links" className="rows">
          {links.map((l) => (
            <li key={l.id} data-link-id={l.id}>
              <span>{`up to #${l.up_to_seq ?? "—"} · ${new Date(l.created_at).toLocaleString()}`}</span>
              {l.revoked_at ? <span className="role">revoked</span> : (
                <button type="button" className="link danger revoke" onClick={() => void act(() => api("DELETE", `/links/${l.id}`))}>
                  revoke
                </button>
              )}
            </li>
          ))}
        </ul>
        <button id="share-close" type="button" className="primary" onClick={onClose}>Done</button>
      </div>
    </div>
  );
}
