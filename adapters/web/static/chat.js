// Siyu web chat. Every piece of text from the network or the member is put on the page with
// textContent, never innerHTML. No external resources: this page must work offline.
"use strict";

(function () {
  const BOT = document.querySelector('meta[name="siyu-bot"]').content;
  const MAX_RETRY_MS = 15000;
  const $ = (id) => document.getElementById(id);
  const log = $("log"), textBox = $("text"), nameBox = $("name"), roomBox = $("room");
  const params = new URLSearchParams(location.search);

  const state = {
    memberId: stored("siyu.member_id", randomId),
    name: stored("siyu.name", () => "会员" + String(Math.floor(1000 + Math.random() * 9000))),
    room: clean(params.get("room")),
    store: clean(params.get("store")),
    socket: null,
    retryMs: 1000,
  };

  function stored(key, make) {
    let value = null;
    try { value = localStorage.getItem(key); } catch (e) { /* storage disabled: use a fresh value */ }
    if (!value) {
      value = make();
      try { localStorage.setItem(key, value); } catch (e) { /* keep it for this page only */ }
    }
    return value;
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "m-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function clean(value) {
    const v = (value || "").trim();
    return v ? v.slice(0, 32) : null;
  }

  // ---- rendering -------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addRow(kind, who, text, extra) {
    const row = el("div", "row " + kind);
    if (extra && extra.mine) row.classList.add("mine");
    if (who) row.appendChild(el("div", "who", who));
    const bubble = el("div", "bubble");
    if (extra && extra.quote) bubble.appendChild(el("span", "quote", "回复 @" + extra.quote));
    bubble.appendChild(document.createTextNode(text));
    if (extra && extra.citations && extra.citations.length) {
      const list = el("ol", "cites");
      extra.citations.forEach((c, i) => {
        const label = "[" + (i + 1) + "] " + c.source + (c.title ? " · " + c.title : "");
        list.appendChild(el("li", "", label));
      });
      bubble.appendChild(list);
    }
    row.appendChild(bubble);
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(row);
    if (atBottom || (extra && extra.mine)) log.scrollTop = log.scrollHeight;
  }

  function show(frame) {
    if (frame.type === "error") {
      addRow("error", "", "⚠ " + frame.error);
      return;
    }
    if (frame.type !== "message") return;
    if (frame.kind === "notice") {
      addRow("notice", "", frame.text);
    } else if (frame.from === "member") {
      addRow("member", frame.mine ? "我" : frame.name, frame.text, { mine: frame.mine });
    } else {
      addRow(frame.kind === "handoff" ? "handoff" : "answer", frame.name, frame.text, {
        quote: frame.quote, citations: frame.citations,
      });
    }
  }

  function setStatus(kind, label) {
    const status = $("status");
    status.dataset.state = kind;
    status.textContent = label;
  }

  function showWhere() {
    $("where").textContent = state.room ? "群聊 · " + state.room : "私聊 · " + BOT;
    $("join").hidden = false;
    $("leave").hidden = !state.room;
    $("mention").hidden = !state.room;
    textBox.placeholder = state.room
      ? "在群里提问请 @" + BOT + "，回车发送"
      : "输入问题，回车发送，Shift+回车换行";
    const url = new URL(location.href);
    if (state.room) url.searchParams.set("room", state.room);
    else url.searchParams.delete("room");
    history.replaceState(null, "", url);
  }

  // ---- the socket ------------------------------------------------------------------------

  function send(frame) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function hello() {
    send({ type: "hello", member_id: state.memberId, name: state.name, room: state.room,
           store_id: state.store });
  }

  function connect() {
    setStatus("connecting", "连接中…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws");
    state.socket = socket;
    socket.onopen = () => { state.retryMs = 1000; setStatus("open", "已连接"); hello(); };
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      show(frame);
    };
    socket.onclose = () => {
      if (state.socket !== socket) return;
      setStatus("closed", "已断开，重连中…");
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, MAX_RETRY_MS);
    };
  }

  // ---- the controls ----------------------------------------------------------------------

  function submit() {
    const text = textBox.value.trim();
    if (!text) return;
    if (!send({ type: "message", text: text })) {
      addRow("error", "", "⚠ 还没有连上服务器，请稍后再发");
      return;
    }
    // A room echoes every message back to everyone (us included); a 1:1 chat does not.
    if (!state.room) addRow("member", "我", text, { mine: true });
    textBox.value = "";
  }

  function rename() {
    const name = clean(nameBox.value);
    if (!name || name === state.name) { nameBox.value = state.name; return; }
    state.name = name;
    try { localStorage.setItem("siyu.name", name); } catch (e) { /* this page only */ }
    hello();
  }

  function moveTo(room) {
    state.room = room;
    roomBox.value = room || "";
    showWhere();
    addRow("notice", "", room ? "正在进入群聊「" + room + "」…" : "已返回私聊");
    hello();
  }

  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  textBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  nameBox.addEventListener("change", rename);
  $("join").addEventListener("click", () => { const r = clean(roomBox.value); if (r) moveTo(r); });
  roomBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); $("join").click(); }
  });
  $("leave").addEventListener("click", () => moveTo(null));
  $("mention").addEventListener("click", () => {
    const tag = "@" + BOT + " ";
    if (!textBox.value.startsWith(tag)) textBox.value = tag + textBox.value;
    textBox.focus();
  });

  nameBox.value = state.name;
  roomBox.value = state.room || "";
  showWhere();
  connect();
})();
