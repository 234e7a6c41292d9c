// The chat app's JSON, as its FastAPI endpoints return it (chat_app/server.py).

export interface Conversation {
  id: string;
  title: string | null;
  message_count: number;
  total_tokens: number;
  updated_at: string;
  created_at: string;
  access: string;
}

export interface ToolCall {
  id: string;
  type?: string;
  function?: { name: string; arguments: string };
  // the guide's combined records carry their input and output in the call itself
  tool?: string;
  input?: unknown;
  output?: unknown;
}

export interface Message {
  id: string;
  seq: number;
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  tool_calls: ToolCall[] | null;
  tool_call_id: string | null;
  token_count: number;
  created_at: string | null;
}

export interface Context {
  token_count: number;
  max_tokens: number;
  summary_included: boolean;
  included_messages: number;
  omitted_messages: number;
}

export interface ConversationPage {
  conversations: Conversation[];
  next_cursor: string | null;
}

export interface MessagePage {
  conversation: Conversation;
  messages: Message[];
  has_more: boolean;
  next_before: number | null;
}

export interface Turn {
  conversation_id: string;
  messages: Message[];
  context: Context;
}

export interface SearchHit {
  conversation_id: string;
  title: string | null;
  seq: number;
  role: string;
  snippet: string;
}

export interface SearchPage {
  results: SearchHit[];
  next_cursor: string | null;
}

export interface Me {
  user_id: string;
  name: string | null;
}

export interface SummaryInfo {
  summary: { content: string; covers_through_seq: number; token_count: number; created_at: string | null } | null;
  job: { status: "queued" | "running" | "done" | "failed"; attempts: number } | null;
}

export interface UsageDay {
  day: string;
  messages: number;
  stored_tokens: number;
  llm_calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number | null;
}

export interface Usage {
  days: UsageDay[];
  tools: { tool: string; calls: number; results: number; without_result: number; last_used: string | null }[];
  agents: {
    agent_id: string | null;
    name: string | null;
    llm_calls: number;
    failures: number;
    latency_p50_ms: number | null;
    latency_p95_ms: number | null;
    tokens_per_reply: number | null;
    cost_usd: number | null;
  }[];
}

export interface Member {
  user_id: string;
  role: "owner" | "editor" | "viewer";
  created_at: string | null;
  accepted_at?: string | null;
}

export interface ShareLink {
  id: string;
  up_to_seq: number | null;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
}

export interface ShareOffer {
  from_user_id: string;
  offers: number;
}

export interface SharedConversation {
  title: string | null;
  messages: Message[];
}
