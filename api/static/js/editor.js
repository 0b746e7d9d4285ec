// A plain-text editor: a textarea with line numbers, and errors marked at the line and column they name.

import { el, fill } from "./util.js";

export class Editor {
  constructor(root) {
    this.root = root;
    this.textarea = root.querySelector("textarea");
    this.gutter = root.querySelector(".gutter");
    this.marks = root.querySelector(".marks");
    this.errors = [];
    this.lineCount = 0;
    this.textarea.addEventListener("input", () => {
      this.clearErrors();
      this.renderGutter();
    });
    this.textarea.addEventListener("scroll", () => this.syncScroll());
    this.textarea.addEventListener("keydown", (e) => this.onKey(e));
    new ResizeObserver(() => this.renderMarks()).observe(this.textarea);
    this.renderGutter();
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.textarea.scrollTop = 0;
    this.clearErrors();
    this.renderGutter();
  }

  /** Tab inserts spaces instead of leaving the editor. */
  onKey(e) {
    if (e.key === "Tab" && !e.ctrlKey && !e.metaKey && !e.altKey && !e.shiftKey) {
      e.preventDefault();
      const t = this.textarea;
      t.setRangeText("    ", t.selectionStart, t.selectionEnd, "end");
      this.renderGutter();
    }
  }

  metrics() {
    const cs = getComputedStyle(this.textarea);
    if (!this.charWidth) {
      const probe = el("span", { class: "probe", text: "0".repeat(40) });
      probe.style.font = cs.font;
      document.body.append(probe);
      this.charWidth = probe.getBoundingClientRect().width / 40;
      probe.remove();
    }
    return {
      lineHeight: parseFloat(cs.lineHeight),
      padTop: parseFloat(cs.paddingTop),
      padLeft: parseFloat(cs.paddingLeft),
      charWidth: this.charWidth,
    };
  }

  renderGutter() {
    const n = this.textarea.value.split("\n").length;
    if (n !== this.lineCount) {
      this.lineCount = n;
      const lines = [];
      for (let i = 1; i <= n; i++) lines.push(el("div", { class: "ln", dataset: { line: i }, text: String(i) }));
      fill(this.gutter, lines);
    }
    for (const ln of this.gutter.children) ln.classList.remove("error");
    for (const e of this.errors) {
      const ln = this.gutter.children[e.line - 1];
      if (ln) {
        ln.classList.add("error");
        ln.title = e.msg;
      }
    }
    this.syncScroll();
  }

  syncScroll() {
    this.gutter.scrollTop = this.textarea.scrollTop;
    this.marks.style.transform = `translate(${-this.textarea.scrollLeft}px, ${-this.textarea.scrollTop}px)`;
  }

  renderMarks() {
    const m = this.metrics();
    const marks = [];
    for (const e of this.errors) {
      const top = m.padTop + (e.line - 1) * m.lineHeight;
      const bar = el("div", { class: "mark-line", dataset: { line: e.line } });
      bar.style.top = `${top}px`;
      bar.style.height = `${m.lineHeight}px`;
      marks.push(bar);
      if (e.col) {
        const caret = el("div", { class: "mark-col", title: e.msg });
        caret.style.top = `${top + m.lineHeight - 3}px`;
        caret.style.left = `${m.padLeft + (e.col - 1) * m.charWidth}px`;
        caret.style.width = `${Math.max(m.charWidth, 6)}px`;
        marks.push(caret);
      }
    }
    fill(this.marks, marks);
    this.syncScroll();
  }

  /** Mark errors [{line, col, msg}] (1-based line and column). */
  setErrors(errors) {
    this.errors = errors.filter((e) => e.line);
    this.renderGutter();
    this.renderMarks();
    if (this.errors.length) this.goTo(this.errors[0].line, this.errors[0].col);
  }

  clearErrors() {
    if (!this.errors.length) return;
    this.errors = [];
    this.renderGutter();
    fill(this.marks);
  }

  /** Put the caret at a line and column and scroll it into view. */
  goTo(line, col = 1) {
    const lines = this.textarea.value.split("\n");
    let pos = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
    pos += Math.min(Math.max((col || 1) - 1, 0), (lines[line - 1] || "").length);
    this.textarea.focus({ preventScroll: true });
    this.textarea.setSelectionRange(pos, pos);
    const m = this.metrics();
    const top = (line - 1) * m.lineHeight;
    const t = this.textarea;
    if (top < t.scrollTop || top > t.scrollTop + t.clientHeight - 2 * m.lineHeight) {
      t.scrollTop = Math.max(0, top - t.clientHeight / 3);
    }
    this.syncScroll();
  }
}
