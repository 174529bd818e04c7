// Siyu web chat. Every piece of text from the network or the member is put on the page with
// textContent, never innerHTML. No external resources: this page must work offline.
//
// URL parameters: ?room=NAME joins a group room; ?store=ID picks the member's store (remembered
// like a pick in the store menu); ?name=NICK sets the nickname. Remembered in localStorage:
// siyu.member_id, siyu.name, siyu.store, siyu.handoff (a 1:1 chat handed to a person).
"use strict";

(function () {
  const BOT = document.querySelector('meta[name="siyu-bot"]').content;
  const MAX_RETRY_MS = 15000;
  const END_HANDOFF = "结束人工";
  const $ = (id) => document.getElementById(id);
  const log = $("log"), textBox = $("text"), nameBox = $("name"), roomBox = $("room");
  const storeBox = $("store");
  const params = new URLSearchParams(location.search);

  const state = {
    memberId: stored("siyu.member_id", randomId),
    name: clean(params.get("name")) ||
      stored("siyu.name", () => "会员" + String(Math.floor(1000 + Math.random() * 9000))),
    room: clean(params.get("room")),
    store: clean(params.get("store"), 64) || recall("siyu.store"),
    socket: null,
    retryMs: 1000,
    mine: new Set(),  // ids of this member's messages in a room (replies to them are for us)
  };
  if (params.get("store")) remember("siyu.store", state.store);
  if (params.get("name")) remember("siyu.name", state.name);

  function recall(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; /* storage disabled */ }
  }

  function remember(key, value) {
    try {
      if (value) localStorage.setItem(key, value);
      else localStorage.removeItem(key);
    } catch (e) { /* storage disabled: keep it for this page only */ }
  }

  function stored(key, make) {
    let value = recall(key);
    if (!value) {
      value = make();
      remember(key, value);
    }
    return value;
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "m-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function clean(value, max) {
    const v = (value || "").trim();
    return v ? v.slice(0, max || 32) : null;
  }

  // ---- rendering -------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The reply text carries its own "（来源：…）" line; frame citations are not shown again.
  function addRow(kind, who, text, extra) {
    const row = el("div", "row " + kind);
    if (extra && extra.mine) row.classList.add("mine");
    if (who) row.appendChild(el("div", "who", who));
    const bubble = el("div", "bubble");
    if (extra && extra.quote) bubble.appendChild(el("span", "quote", "回复 @" + extra.quote));
    bubble.appendChild(document.createTextNode(text));
    row.appendChild(bubble);
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(row);
    if (atBottom || (extra && extra.mine)) log.scrollTop = log.scrollHeight;
  }

  function show(frame) {
    if (frame.type === "error" || frame.type === "busy") {
      addRow("error", "", "⚠ " + frame.error);
      return;
    }
    if (frame.type !== "message") return;
    if (frame.kind === "notice") {
      addRow("notice", "", frame.text);
    } else if (frame.from === "member") {
      if (frame.mine) state.mine.add(frame.id);
      addRow("member", frame.mine ? "我" : frame.name, frame.text, { mine: frame.mine });
    } else {
      addRow(frame.kind === "handoff" ? "handoff" : "answer", frame.name, frame.text, {
        quote: frame.quote,
      });
      if (!state.room || state.mine.has(frame.reply_to)) setHandoff(frame.kind === "handoff");
    }
  }

  // While a person serves the member the bot stays silent: offer the way back to the bot.
  function setHandoff(on) {
    $("handoff").hidden = !on;
    if (!state.room) remember("siyu.handoff", on ? "1" : null);
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
    $("handoff").hidden = state.room ? true : recall("siyu.handoff") !== "1";
    textBox.placeholder = state.room
      ? "在群里提问请 @" + BOT + "，回车发送"
      : "输入问题，回车发送，Shift+回车换行";
    const url = new URL(location.href);
    if (state.room) url.searchParams.set("room", state.room);
    else url.searchParams.delete("room");
    history.replaceState(null, "", url);
  }

  // ---- the store menu --------------------------------------------------------------------

  function addStore(id, name) {
    const option = el("option", "", name);
    option.value = id;
    storeBox.appendChild(option);
  }

  async function loadStores() {
    let stores = [];
    try {
      const resp = await fetch("/api/stores", { cache: "no-store" });
      if (resp.ok) stores = (await resp.json()).stores || [];
    } catch (e) { /* offline or no directory: the menu keeps "不指定门店" */ }
    stores.forEach((s) => addStore(s.id, s.name));
    if (state.store && !stores.some((s) => s.id === state.store)) addStore(state.store, state.store);
    storeBox.value = state.store || "";
    storeBox.closest("label").hidden = storeBox.options.length <= 1;
  }

  function pickStore() {
    state.store = storeBox.value || null;
    remember("siyu.store", state.store);
    const label = storeBox.options[storeBox.selectedIndex].textContent;
    addRow("notice", "", state.store ? "已选择门店：" + label + "，提问按这家门店回答" : "已不指定门店");
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

  function say(text) {
    if (!send({ type: "message", text: text, store_id: state.store })) {
      addRow("error", "", "⚠ 还没有连上服务器，请稍后再发");
      return false;
    }
    // A room echoes every message back to everyone (us included); a 1:1 chat does not.
    if (!state.room) addRow("member", "我", text, { mine: true });
    return true;
  }

  function submit() {
    const text = textBox.value.trim();
    if (text && say(text)) textBox.value = "";
  }

  function addressed(text) {
    return state.room ? "@" + BOT + " " + text : text;
  }

  function rename() {
    const name = clean(nameBox.value);
    if (!name || name === state.name) { nameBox.value = state.name; return; }
    state.name = name;
    remember("siyu.name", name);
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
  storeBox.addEventListener("change", pickStore);
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
  $("end-handoff").addEventListener("click", () => say(addressed(END_HANDOFF)));
  $("chips").addEventListener("click", (e) => {
    const chip = e.target.closest("button.chip");
    if (chip) say(addressed(chip.textContent));
  });

  nameBox.value = state.name;
  roomBox.value = state.room || "";
  showWhere();
  loadStores();
  connect();
})();
