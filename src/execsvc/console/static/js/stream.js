// One WebSocket to /v1/ws: authenticates with an `auth` message, subscribes, and after a drop reconnects and
// resumes every account channel with `since_seq` (the last seq it applied), so no update is missed or repeated.
const RESUMABLE = new Set(["orders", "fills", "positions", "risk", "venue", "signals"]);

export class Stream extends EventTarget {
  constructor(token, channels) {
    super();
    this.token = token;
    this.channels = channels;
    this.lastSeq = new Map();
    this.socket = null;
    this.closed = false;
    this.retry = 250;
    this.connects = 0;
  }

  start() { this.connect(); }

  stop() {
    this.closed = true;
    this.socket?.close(1000, "logout");
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/ws`);
    this.socket = socket;
    this.status(this.connects ? "reconnecting" : "connecting");
    socket.addEventListener("open", () => socket.send(JSON.stringify({ action: "auth", token: this.token })));
    socket.addEventListener("message", (event) => this.receive(JSON.parse(event.data)));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      if (this.closed) return;
      if (event.code === 4401 || event.code === 4403) {
        this.status("refused");
        window.dispatchEvent(new CustomEvent("execsvc:unauthorized"));
        return;
      }
      this.status("reconnecting");
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    });
  }

  receive(msg) {
    if (msg.type === "authenticated") {
      this.connects += 1;
      this.retry = 250;
      this.dispatchEvent(new CustomEvent("authenticated", { detail: msg }));
      for (const channel of this.channels) {
        const request = { action: "subscribe", channel };
        if (RESUMABLE.has(channel) && this.lastSeq.has(channel)) request.since_seq = this.lastSeq.get(channel);
        this.socket.send(JSON.stringify(request));
      }
      this.status("live");
    } else if (msg.type === "subscribed") {
      if (!this.lastSeq.has(msg.channel) && RESUMABLE.has(msg.channel)) this.lastSeq.set(msg.channel, msg.seq);
    } else if (msg.type === "snapshot") {
      if (RESUMABLE.has(msg.channel)) this.lastSeq.set(msg.channel, msg.seq);
      this.dispatchEvent(new CustomEvent(msg.channel, { detail: { snapshot: true, items: msg.data, seq: msg.seq } }));
    } else if (msg.type === "error") {
      this.dispatchEvent(new CustomEvent("error", { detail: msg }));
    } else if (msg.channel && msg.seq !== undefined && msg.type === undefined) {
      if (RESUMABLE.has(msg.channel)) {
        const last = this.lastSeq.get(msg.channel);
        if (last !== undefined && msg.seq <= last) return; // already applied (never expected; the server sends once)
        this.lastSeq.set(msg.channel, msg.seq);
      }
      this.dispatchEvent(new CustomEvent(msg.channel, { detail: { event: msg.event, data: msg.data, seq: msg.seq } }));
    }
  }

  status(state) {
    const el = document.getElementById("stream-status");
    if (!el) return;
    el.dataset.state = state;
    el.dataset.connects = String(this.connects);
    el.textContent = `Stream: ${state}`;
  }
}
