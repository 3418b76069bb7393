// The notebook widget's uploader (an anywidget ES module; see upload.py).
//
// Files of any size go to the kernel over the widget's comm in chunks: each File is read
// with slice(), each chunk travels as one binary buffer, and at most `window` chunks are
// on their way before the kernel acknowledges one (flow control: the kernel's socket and
// memory never hold more than a few MiB, and the progress shown is what the kernel has
// written). The kernel writes the chunks to a temporary file and commits the files into
// the volume at the end, all at once; a cancelled or failed upload leaves nothing.
//
// Runs in any frontend that renders ipywidgets (JupyterLab, Notebook, VS Code, Colab).

// a kernel busy running a long cell answers late, not never (the model's ack_timeout)
const ACK_TIMEOUT_MS = 300000;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function formatSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0).replace(/\.0$/, "")} ${units[i]}`;
}

function newId() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Replies from the kernel for one upload, handed out in order to whoever waits. */
class Inbox {
  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs || ACK_TIMEOUT_MS;
    this.queue = [];
    this.waiting = null;
  }
  put(msg) {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      clearTimeout(w.timer);
      w.resolve(msg);
    } else {
      this.queue.push(msg);
    }
  }
  /** The next reply. Without one in time: rejects, or with `onLate`, calls it and
   * keeps waiting (for the commit's outcome, which only the kernel can tell). */
  next(onLate) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (onLate) {
          onLate();
          return;
        }
        this.waiting = null;
        reject(new Error("the kernel did not answer (is it still running?)"));
      }, this.timeoutMs);
      this.waiting = { resolve, timer };
    });
  }
  /** Wake whoever waits with a made-up reply (used by cancel). */
  interrupt(msg) {
    this.put(msg);
  }
}

/** The kernel's error reply; `unsure`: the commit may have landed (check the listing). */
class KernelError extends Error {
  constructor(message, unsure) {
    super(message);
    this.unsure = Boolean(unsure);
  }
}
/** What happened to the kernel, from a "local-gone" message. */
function gone(msg) {
  return msg.stopped ? "the kernel stopped (it died or was restarted)" : "the kernel closed this widget";
}

/** The kernel closed the widget, or stopped (died, restarted), mid-upload. */
class GoneError extends Error {
  constructor(message, unsure) {
    super(message);
    this.unsure = Boolean(unsure);
  }
}

function render({ model, el: root }) {
  root.classList.add("jv-upload");
  const input = el("input", "jv-upload-input");
  input.type = "file";
  input.multiple = true;
  input.hidden = true;
  const button = el("button", "jupyter-button widget-button jv-upload-button");
  button.type = "button";
  button.setAttribute("aria-label", "Upload");
  button.appendChild(el("i", "fa fa-upload"));
  button.appendChild(document.createTextNode(" Upload"));
  const box = el("div", "jv-uploads");
  box.setAttribute("aria-live", "polite");
  root.append(button, input, box);

  const inboxes = new Map();
  const onMsg = (msg) => {
    if (msg && msg.id && inboxes.has(msg.id)) inboxes.get(msg.id).put(msg);
  };
  model.on("msg:custom", onMsg);
  // No reply will come: the kernel closed the widget ("destroy"), or it stopped (killed,
  // crashed, restarted): JupyterLab then marks every widget of the old kernel as no
  // longer live, and nothing else is said to the page.
  const tellGone = (stopped) => {
    for (const [id, inbox] of inboxes) inbox.put({ op: "local-gone", id, stopped });
  };
  const onGone = () => tellGone(false);
  // (anywidget's model does not show comm_live; the event itself only comes when the
  // widget stops being live: a model is made live and never becomes so again)
  const onLive = () => {
    if (model.comm_live !== true) tellGone(true);
  };
  model.on("destroy", onGone);
  model.on("comm_live_update", onLive);

  const sync = () => {
    button.disabled = model.get("disabled") || busy;
    button.title = model.get("hint");
  };
  let busy = false;
  model.on("change:disabled", sync);
  model.on("change:hint", sync);
  sync();

  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = "";
    if (!files.length) return;
    busy = true;
    sync();
    upload(files).finally(() => {
      busy = false;
      sync();
    });
  });

  async function upload(files) {
    const id = newId();
    const inbox = new Inbox(model.get("ack_timeout"));
    inboxes.set(id, inbox);
    const group = el("div", "jv-upload-group");
    group.dataset.state = "starting";
    const rows = files.map((f) => {
      const row = el("div", "jv-upload-row");
      row.dataset.name = f.name;
      row.dataset.state = "queued";
      row.appendChild(el("span", "jv-upload-name", f.name));
      const bar = el("progress");
      bar.max = Math.max(f.size, 1);
      bar.value = 0;
      bar.setAttribute("aria-label", `Progress of ${f.name}`);
      row.appendChild(bar);
      const text = row.appendChild(el("span", "jv-upload-state", "waiting"));
      group.appendChild(row);
      return { file: f, row, bar, text };
    });
    const footer = group.appendChild(el("div", "jv-upload-footer"));
    const cancel = el("button", "jupyter-button widget-button jv-upload-cancel", "Cancel");
    cancel.type = "button";
    cancel.setAttribute("aria-label", "Cancel upload");
    const summary = el("span", "jv-upload-summary");
    footer.append(cancel, summary);
    box.replaceChildren(group);

    let cancelled = false;
    cancel.addEventListener("click", () => {
      if (cancelled) return;
      cancelled = true;
      cancel.disabled = true;
      summary.textContent = "cancelling…";
      inbox.interrupt({ op: "local-cancel", id });
    });

    const setRow = (r, state, text) => {
      r.row.dataset.state = state;
      r.text.textContent = text;
    };
    const finish = (state, text) => {
      group.dataset.state = state;
      cancel.remove();
      summary.textContent = text;
      if (state === "error") summary.setAttribute("role", "alert");
    };
    /** The next reply of the kernel; a cancel click or an error reply throws. */
    const reply = async () => {
      const msg = await inbox.next();
      if (msg.op === "local-cancel") throw new Error("cancelled");
      if (msg.op === "local-gone") throw new GoneError(gone(msg));
      if (msg.op === "error") throw new KernelError(msg.message, msg.unsure);
      return msg;
    };

    const total = files.reduce((s, f) => s + f.size, 0);
    const started = performance.now();
    let ackedTotal = 0;
    try {
      model.send({
        op: "begin",
        id,
        files: files.map((f) => ({ name: f.name, size: f.size })),
      });
      const ready = await reply();
      const chunk = Math.max(ready.chunk_size || model.get("chunk_size"), 64 * 1024);
      const window = Math.max(ready.window || model.get("window"), 1);
      group.dataset.state = "uploading";
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i];
        const size = r.file.size;
        let acked = 0;
        let inFlight = 0;
        const show = () => {
          const secs = (performance.now() - started) / 1000;
          const speed = secs > 0 ? ` · ${formatSize(Math.round(ackedTotal / secs))}/s` : "";
          r.bar.value = acked;
          setRow(r, "uploading", `${formatSize(acked)} of ${formatSize(size)}${speed}`);
          summary.textContent = `${formatSize(ackedTotal)} of ${formatSize(total)}${speed}`;
        };
        show();
        const takeAck = async () => {
          const msg = await reply();
          if (msg.op !== "ack" || msg.file !== i) throw new Error(`unexpected reply ${msg.op}`);
          ackedTotal += msg.received - acked;
          acked = msg.received;
          inFlight -= 1;
          show();
        };
        for (let offset = 0; offset < size; ) {
          if (cancelled) throw new Error("cancelled");
          const end = Math.min(offset + chunk, size);
          const data = await r.file.slice(offset, end).arrayBuffer();
          if (cancelled) throw new Error("cancelled");
          model.send({ op: "chunk", id, file: i, offset }, undefined, [data]);
          offset = end;
          inFlight += 1;
          while (inFlight >= window) await takeAck();
        }
        while (inFlight > 0) await takeAck();
        r.bar.value = Math.max(size, 1);
        setRow(r, "sent", "sent, waiting for the others…");
      }
      for (const r of rows) setRow(r, "committing", "saving into the volume…");
      group.dataset.state = "committing";
      summary.textContent = "saving into the volume…";
      cancel.disabled = true; // the commit is under way: it lands whole or not at all
      model.send({ op: "end", id });
      // Every byte is in the kernel, which commits them now: however long that takes
      // (a big file into S3), only its reply tells whether they were saved, so the
      // page waits for it rather than call the upload failed.
      const late = () => {
        summary.textContent = "still saving into the volume (the kernel is busy with it)…";
      };
      let done = await inbox.next(late);
      while (done.op === "local-cancel") done = await inbox.next(late); // too late to cancel
      if (done.op === "local-gone") {
        throw new GoneError(
          `${gone(done)} while saving: refresh the listing to see whether the files are there`,
          true,
        );
      }
      if (done.op === "error") throw new KernelError(done.message, done.unsure);
      for (const r of rows) setRow(r, "done", "uploaded");
      const secs = (performance.now() - started) / 1000;
      finish("done", `${done.message}: ${formatSize(total)} in ${secs.toFixed(1)} s`);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (cancelled && !(e instanceof KernelError) && !(e instanceof GoneError)) {
        model.send({ op: "cancel", id });
        // the kernel drops what it received; wait for its word so "cancelled" is true
        try {
          let msg;
          do {
            msg = await inbox.next();
          } while (msg.op !== "cancelled" && msg.op !== "error" && msg.op !== "local-gone");
          for (const r of rows) setRow(r, "cancelled", "cancelled");
          finish(
            msg.op === "error" ? "error" : "cancelled",
            msg.op === "error" ? `cancel failed: ${msg.message}` : "cancelled: nothing was uploaded",
          );
        } catch (e2) {
          finish("error", `cancel failed: ${e2.message}`);
        }
      } else {
        // tell the kernel to drop what it has (it may be gone: that is fine)
        if (!(e instanceof KernelError) && !(e instanceof GoneError)) {
          try {
            model.send({ op: "cancel", id });
          } catch {
            // the comm is closed: the kernel dropped it all already
          }
        }
        const unsure = Boolean(e && e.unsure);
        for (const r of rows) setRow(r, "failed", unsure ? "may not be saved" : "not uploaded");
        finish("error", `upload failed: ${why}`);
      }
    } finally {
      inboxes.delete(id);
    }
  }

  return () => {
    model.off("msg:custom", onMsg);
    model.off("destroy", onGone);
    model.off("comm_live_update", onLive);
    model.off("change:disabled", sync);
    model.off("change:hint", sync);
  };
}

export default { render };
