// The aixgo chat page: plain JavaScript, no build step. It talks to the API beside it
// (relative "api/..." URLs, so it works wherever the app is mounted). Every piece of text
// from the server or the user is put on the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { agent: null, session: null, busy: false, hosted: new Set() };

// A remote agent keeps its sessions on the node that runs it: the page neither lists nor
// starts them; its first reply names the session there, which the page then continues.
function isHosted() {
  return state.hosted.has(state.agent);
}

function showControls() {
  const hosted = isHosted();
  $("new-session").hidden = hosted;
  $("checkpoint-form").hidden = hosted;
}

function api(path) {
  return "api" + path;
}

async function problem(response) {
  try {
    const body = await response.json();
    return new Error(`${body.error.type}: ${body.error.message}`);
  } catch {
    return new Error(`HTTP ${response.status}`);
  }
}

async function request(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(api(path), init);
  if (!response.ok) throw await problem(response);
  return response.status === 204 ? null : response.json();
}

function say(text) {
  $("status").textContent = text;
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function textOf(message) {
  const content = message.content;
  let text = typeof content === "string"
    ? content
    : content.filter((p) => p.type === "text").map((p) => String(p.text ?? "")).join("");
  for (const call of message.tool_calls || []) {
    text += (text ? "\n" : "") + `→ ${call.name}(${JSON.stringify(call.arguments)})`;
  }
  return text;
}

function bubble(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  item.dataset.role = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function fill(item, message) {
  item.className = `message ${message.role}`;
  item.dataset.role = message.role;
  item.dataset.seq = String(message.seq ?? "");
  item.querySelector(".role").textContent = message.role;
  item.querySelector(".text").textContent = textOf(message);
}

// The events of a text/event-stream body, as [name, parsed JSON data] pairs.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield [name, JSON.parse(data)];
    }
  }
}

async function loadAgents() {
  const { items } = await request("GET", "/agents");
  const select = $("agent");
  select.replaceChildren();
  for (const agent of items.filter((a) => a.session_mode === "enabled")) {
    const option = document.createElement("option");
    option.value = agent.name;
    option.textContent = agent.name;
    select.append(option);
  }
  state.agent = select.value || null;
  state.hosted = new Set(items.filter((a) => a.hosted).map((a) => a.name));
  showControls();
}

async function loadSessions() {
  if (!state.agent) return;
  if (isHosted()) {
    const note = document.createElement("li");
    note.className = "note";
    note.textContent = `Kept where ${state.agent} runs.`;
    $("sessions").replaceChildren(note);
    return;
  }
  const query = new URLSearchParams({ agent: state.agent, limit: "50" });
  const { items } = await request("GET", `/sessions?${query}`);
  const list = $("sessions");
  list.replaceChildren();
  for (const info of items) {
    const item = document.createElement("li");
    item.dataset.session = info.id;
    if (info.id === state.session) item.classList.add("current");
    const button = document.createElement("button");
    button.type = "button";
    const title = typeof info.metadata.title === "string" ? info.metadata.title : info.id.slice(0, 8);
    const when = new Date(info.updated_at).toLocaleString();
    button.textContent = `${title} · ${info.message_count} messages · ${when}`;
    button.addEventListener("click", () => openSession(info.id).catch((e) => say(e.message)));
    item.append(button);
    list.append(item);
  }
}

async function loadCheckpoints() {
  const list = $("checkpoints");
  list.replaceChildren();
  if (!state.session || isHosted()) return;
  const { items } = await request("GET", `/sessions/${state.session}/checkpoints`);
  for (const cp of items) {
    const item = document.createElement("li");
    item.className = "checkpoint";
    item.dataset.checkpoint = cp.id;
    const label = document.createElement("span");
    label.textContent = `${cp.label ?? "checkpoint"} (${cp.seq} messages)`;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Restore";
    button.addEventListener("click", () => restore(cp.id).catch((e) => say(e.message)));
    item.append(label, button);
    list.append(item);
  }
}

async function openSession(id) {
  const info = await request("GET", `/sessions/${id}`);
  state.session = info.id;
  if (state.agent !== info.agent) {
    $("agent").value = info.agent;
    state.agent = info.agent;
  }
  history.replaceState(null, "", `#${info.id}`);
  $("session-title").textContent = `Session ${info.id}`;
  $("delete-session").hidden = false;
  const { items } = await request("GET", `/sessions/${info.id}/messages?last=200`);
  $("messages").replaceChildren();
  for (const message of items) fill(bubble(message.role, ""), message);
  say("");
  await Promise.all([loadSessions(), loadCheckpoints()]);
}

// A remote agent's session: its id with the agent's name in the URL fragment, since only the
// node that runs the agent knows it.
function showHosted(id) {
  state.session = id;
  history.replaceState(null, "", `#${encodeURIComponent(state.agent)}/${id}`);
  $("session-title").textContent = `Session ${id}, kept where ${state.agent} runs`;
}

async function openHosted(agent, id) {
  $("agent").value = agent;
  state.agent = agent;
  showControls();
  const query = new URLSearchParams({ agent, last: "200" });
  const { items } = await request("GET", `/sessions/${id}/messages?${query}`);
  showHosted(id);
  $("messages").replaceChildren();
  for (const message of items) fill(bubble(message.role, ""), message);
  say("");
  await Promise.all([loadSessions(), loadCheckpoints()]);
}

async function newSession() {
  const info = await request("POST", "/sessions", { agent: state.agent });
  await openSession(info.id);
}

async function deleteSession() {
  if (!state.session || !confirm("Delete this session with all its messages?")) return;
  await request("DELETE", `/sessions/${state.session}`);
  state.session = null;
  history.replaceState(null, "", "#");
  $("messages").replaceChildren();
  $("session-title").textContent = "Session deleted.";
  $("delete-session").hidden = true;
  await Promise.all([loadSessions(), loadCheckpoints()]);
}

async function checkpoint(event) {
  event.preventDefault();
  if (!state.session) return say("Start a session first.");
  const label = $("checkpoint-label").value.trim();
  await request("POST", `/sessions/${state.session}/checkpoints`, label ? { label } : {});
  $("checkpoint-label").value = "";
  await loadCheckpoints();
}

async function restore(checkpointId) {
  await request("POST", `/sessions/${state.session}/checkpoints/${checkpointId}/restore`);
  await openSession(state.session);
}

async function send(event) {
  event.preventDefault();
  const input = $("input");
  const text = input.value;
  if (!text.trim() || state.busy || !state.agent) return;
  state.busy = true;
  $("send").disabled = true;
  say("");
  try {
    if (!state.session && !isHosted()) await newSession();
    bubble("user", text);
    input.value = "";
    let current = bubble("assistant", "");
    current.classList.add("streaming");
    const response = await fetch(api(`/agents/${encodeURIComponent(state.agent)}/stream`), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ content: text, session_id: state.session, id: newId() }),
    });
    if (!response.ok) throw await problem(response);
    for await (const [name, data] of events(response.body)) {
      if (name === "session") {
        if (isHosted() && data.session_id) showHosted(data.session_id);
      } else if (name === "delta") {
        current.querySelector(".text").textContent += data.text;
      } else if (name === "step") {
        // The text streamed so far belongs to this step; what follows goes in a new bubble.
        fill(current, data.message);
        current.classList.add("step");
        current = bubble("assistant", "");
        current.classList.add("streaming");
      } else if (name === "reply") {
        fill(current, data.message);
      } else if (name === "error") {
        current.remove();
        throw new Error(`${data.error.type}: ${data.error.message}`);
      }
    }
  } catch (error) {
    say(error.message);
  } finally {
    for (const item of document.querySelectorAll(".streaming")) {
      item.classList.remove("streaming");
    }
    state.busy = false;
    $("send").disabled = false;
    await loadSessions().catch(() => {});
  }
}

async function start() {
  $("composer").addEventListener("submit", send);
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("new-session").addEventListener("click", () => newSession().catch((e) => say(e.message)));
  $("delete-session").addEventListener("click", () => deleteSession().catch((e) => say(e.message)));
  $("checkpoint-form").addEventListener("submit", (e) => checkpoint(e).catch((x) => say(x.message)));
  $("agent").addEventListener("change", () => {
    state.agent = $("agent").value;
    state.session = null;
    showControls();
    $("messages").replaceChildren();
    $("delete-session").hidden = true;
    $("session-title").textContent = "No session yet: send a message or start one.";
    loadSessions().catch((e) => say(e.message));
    loadCheckpoints().catch((e) => say(e.message));
  });
  await loadAgents();
  const wanted = location.hash.slice(1);
  const remote = /^(.+)\/([0-9a-f]{32})$/.exec(wanted);
  if (/^[0-9a-f]{32}$/.test(wanted)) {
    await openSession(wanted);
  } else if (remote && state.hosted.has(decodeURIComponent(remote[1]))) {
    await openHosted(decodeURIComponent(remote[1]), remote[2]);
  } else {
    await loadSessions();
  }
  document.body.dataset.ready = "true";
}

start().catch((error) => say(error.message));
