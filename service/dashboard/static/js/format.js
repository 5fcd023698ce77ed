// How numbers, statuses and progress are shown, in one place so every page agrees.
import { h } from "./dom.js";

export function num(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const abs = Math.abs(value);
  // LRs span decades: small ones read better in exponent form.
  if (abs < 1e-3 || abs >= 1e5) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

// Integers with thousands separators (a parameter count: 1,234,567).
export function count(value) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en-US");
}

// A size in bytes for a person: "812 B", "3.4 kB", "12.1 MB" (powers of 1000).
export function bytes(value) {
  if (value === null || value === undefined) return "—";
  let size = Number(value);
  for (const unit of ["B", "kB", "MB", "GB"]) {
    if (size < 1000 || unit === "GB") return unit === "B" ? `${size} B` : `${size.toFixed(1)} ${unit}`;
    size /= 1000;
  }
  return `${value} B`;
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status.replace("_", " "));
}

// `unit`: what is counted ("steps" for a range test, whose progress has the same shape).
export function progressBar(progress, unit = "epochs") {
  const pct = Math.round((progress.fraction || 0) * 100);
  return h(
    "span",
    { class: "progress-cell", title: `${progress.epochs_run} / ${progress.epochs} ${unit}` },
    h("span", { class: "progress" }, h("span", { style: `width:${pct}%` })),
    ` ${progress.epochs_run}/${progress.epochs}`,
  );
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString();
}

export function paramsText(params) {
  return Object.entries(params || {})
    .map(([k, v]) => `${k}=${typeof v === "number" ? num(v) : JSON.stringify(v)}`)
    .join(", ");
}

// How long ago a timestamp was, for a person: "12 s ago", "3 min ago", "5 h ago", "2 d ago".
export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// Runs per status, most first: "7 succeeded · 2 pruned · 1 running".
export function countsText(counts) {
  return Object.entries(counts || {})
    .sort(([a, m], [b, n]) => n - m || a.localeCompare(b))
    .map(([status, n]) => `${n} ${status.replace("_", " ")}`)
    .join(" · ");
}

// A span of time for a person: "850 ms", "12.3 s", "4 min 05 s", "2 h 07 min".
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Number(seconds.toPrecision(3))} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}
