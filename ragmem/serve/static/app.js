// ragmem's page: ask, watch the answer stream in, see its span in its document.
// Plain JS, no build step, nothing fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { conversation: null, busy: false, lastTrigger: null, docs: new Map() };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

// Server-sent events read from a fetch response: yields [event, data] pairs.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) yield [event, JSON.parse(data)];
    }
  }
}

async function loadIndexes() {
  const select = $("index");
  const chosen = select.value;
  const { indexes } = await getJSON("/api/indexes");
  select.textContent = "";
  for (const index of indexes) {
    const option = el("option", "", `${index.name} (${index.documents} documents)`);
    option.value = index.name;
    select.append(option);
  }
  if (chosen) select.value = chosen;
  if (!indexes.length) $("hint").textContent = "No index is served: build one with ragmem index PATH --index NAME.";
}

function seconds(s) {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function where(c) {
  return `${c.doc_id}${c.section ? " › " + c.section : ""}, chars ${c.start}–${c.end}`;
}

function openButton(label, index, target, kind) {
  const button = el("button", `open ${kind}`, label);
  button.type = "button";
  button.addEventListener("click", () => openSpan(index, target, kind, button));
  return button;
}

async function ask(question) {
  const index = $("index").value;
  const turn = el("article", "turn");
  const answerText = el("p", "answer pending", "");
  const status = el("small", "meta", "searching…");
  turn.append(el("p", "question", question), answerText, status);
  $("conversation").append(turn);
  $("hint").hidden = true;
  turn.scrollIntoView({ block: "end" });
  const body = { question, index, conversation: state.conversation || "new" };
  const response = await fetch("/api/ask/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    const retry = response.headers.get("Retry-After");
    throw new Error((data.error || response.statusText) + (retry ? ` (retry in ${retry} s)` : ""));
  }
  for await (const [event, data] of events(response)) {
    if (event === "conversation") state.conversation = data.conversation;
    else if (event === "passages") status.textContent = `reading ${data.passages.length} passages…`;
    else if (event === "text") {
      answerText.textContent += data;
      status.textContent = "answering…";
    } else if (event === "answer") render(turn, answerText, status, data, index);
    else if (event === "error") throw new Error(data.error);
  }
}

function render(turn, answerText, status, answer, index) {
  answerText.classList.remove("pending");
  answerText.textContent = answer.answer;
  const t = answer.timings;
  const parts = [];
  if (answer.confidence !== null) parts.push(`confidence ${answer.confidence.toFixed(2)}`);
  parts.push(`retrieve ${seconds(t.retrieve_s)}`, `fill ${seconds(t.fill_s)}`,
             `${answer.mode === "extract" ? "answer" : "generate"} ${seconds(t.generate_s)}`);
  status.textContent = parts.join(" · ");
  let first = null;
  if (answer.abstained) {
    answerText.classList.add("abstained");
    answerText.textContent = "Not found in the indexed documents.";
  }
  if (answer.citations.length) {
    const cites = el("p", "citations");
    for (const c of answer.citations) {
      const button = openButton(`[${c.number}] ${where(c)}`, index, c, "answer");
      cites.append(button);
      first = first || button;
    }
    turn.append(cites);
  }
  if (answer.suggestions.length) {
    const box = el("div", "suggestions");
    box.append(el("p", "label", "Closest evidence — a suggestion, not an answer:"));
    for (const c of answer.suggestions) {
      const button = openButton(`${where(c)}: “${c.quote.slice(0, 160)}${c.quote.length > 160 ? "…" : ""}”`,
                                index, c, "suggestion");
      box.append(button);
      first = first || button;
    }
    turn.append(box);
  }
  if (answer.passages.length) {
    const details = el("details", "passages");
    details.append(el("summary", "", `Working memory: ${answer.passages.length} passages`));
    const list = el("ol");
    for (const p of answer.passages) {
      const item = el("li");
      item.append(openButton(`${where(p)} (score ${p.score.toFixed(2)})`, index, p, "passage"),
                  el("span", "snippet", p.text.slice(0, 200) + (p.text.length > 200 ? "…" : "")));
      list.append(item);
    }
    details.append(list);
    turn.append(details);
  }
  if (first) first.click();
}

async function documentOf(index, docId) {
  const key = `${index}\u0000${docId}`;
  if (!state.docs.has(key)) {
    const path = `/api/indexes/${encodeURIComponent(index)}/documents/${encodeURIComponent(docId)}`;
    state.docs.set(key, getJSON(path));
  }
  return state.docs.get(key);
}

// Show a document with [start, end) marked: an answer inside its sentence, a passage,
// or a suggestion; scrolled so that the mark is in view.
async function openSpan(index, target, kind, trigger) {
  state.lastTrigger = trigger || null;
  const doc = await documentOf(index, target.doc_id);
  const text = reflowed(doc.text);
  const { start, end } = target;
  let from = start;
  let to = end;
  if (kind === "answer") {
    const sentence = doc.sentences.find(([s, e]) => s <= start && end <= e);
    if (sentence) [from, to] = sentence;
  }
  const body = $("viewer-body");
  body.textContent = "";
  const context = el("span", kind === "answer" ? "sentence" : "");
  const mark = el("mark", kind, doc.text.slice(start, end));  // exactly the span
  mark.tabIndex = -1;
  context.append(text.slice(from, start), mark, text.slice(end, to));
  body.append(text.slice(0, from), context, text.slice(to));
  $("viewer-title").textContent = doc.doc_id;
  const label = { answer: "the answer", passage: "a passage of the working memory",
                  suggestion: "closest evidence (a suggestion, not an answer)" }[kind];
  $("viewer-where").textContent = `${label}, chars ${start}–${end} of ${doc.length}`;
  $("viewer").hidden = false;
  document.body.classList.add("viewing");
  mark.scrollIntoView({ block: "center" });
  mark.focus({ preventScroll: true });
}

// Hard-wrapped lines joined into paragraphs for reading: a lone line break becomes a
// space (same length, so every offset still points at the same character), unless the
// next line starts a list item, a heading, a quote, a table row or an indent.
function reflowed(text) {
  return text.replace(/([^\n])\n(?=[^\n\-*#>|\d \t])/g, "$1 ");
}

function closeViewer() {
  $("viewer").hidden = true;
  document.body.classList.remove("viewing");
  if (state.lastTrigger) state.lastTrigger.focus();
}

function upload(files) {
  if (!files.length) return;
  const index = $("index").value;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const bar = $("progress");
  const status = $("upload-status");
  bar.hidden = false;
  bar.value = 0;
  status.textContent = `sending ${files.length} file(s)…`;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/indexes/${encodeURIComponent(index)}/documents`);
  xhr.setRequestHeader("Accept", "text/event-stream");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 0.5 * e.loaded / e.total; };
  let seen = 0;
  xhr.onprogress = () => {
    const blocks = xhr.responseText.slice(seen).split("\n\n");
    seen = xhr.responseText.length - blocks[blocks.length - 1].length;
    for (const block of blocks.slice(0, -1)) {
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (kind === "queued" && data.ahead) status.textContent = `waiting for ${data.ahead} write(s) before it…`;
      else if (kind === "waiting") status.textContent = data.reason;
      else if (kind === "progress") {
        bar.value = 0.5 + 0.5 * data.files_done / Math.max(1, data.files_total);
        status.textContent = `indexing ${data.current || ""} (${data.files_done}/${data.files_total})`;
      } else if (kind === "done") {
        bar.value = 1;
        const failed = data.failed.length ? `; skipped ${data.failed.map((f) => `${f.where} (${f.reason})`).join(", ")}` : "";
        status.textContent = `indexed: ${data.added} added, ${data.updated} updated, ${data.unchanged} unchanged${failed}`;
        state.docs.clear();
        loadIndexes();
      } else if (kind === "error") status.textContent = `upload failed: ${data.error}`;
    }
  };
  xhr.onload = () => {
    if (xhr.status !== 200) {
      let message = xhr.statusText;
      try { message = JSON.parse(xhr.responseText).error; } catch (_) { /* not JSON */ }
      status.textContent = `upload failed: ${message}`;
    }
  };
  xhr.onerror = () => { status.textContent = "upload failed: the server could not be reached"; };
  xhr.send(form);
}

function main() {
  $("ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!question || state.busy) return;
    state.busy = true;
    $("send").disabled = true;
    try {
      await ask(question);
      $("question").value = "";
    } catch (err) {
      const turns = document.querySelectorAll(".turn");
      const last = turns[turns.length - 1];
      const note = el("p", "error", String(err.message || err));
      note.setAttribute("role", "alert");
      (last || $("conversation")).append(note);
    } finally {
      state.busy = false;
      $("send").disabled = false;
      $("question").focus();
    }
  });
  $("new").addEventListener("click", () => {
    state.conversation = null;
    $("conversation").querySelectorAll(".turn").forEach((t) => t.remove());
    $("hint").hidden = false;
    closeViewer();
    $("question").focus();
  });
  $("index").addEventListener("change", () => { state.conversation = null; });
  $("viewer-close").addEventListener("click", closeViewer);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("viewer").hidden) closeViewer();
  });
  $("files").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
  document.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) $("drop").classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    $("drop").classList.remove("over");
    upload([...e.dataTransfer.files]);
  });
  loadIndexes().catch((err) => { $("hint").textContent = String(err.message || err); });
}

main();
