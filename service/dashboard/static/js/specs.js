// Reading stored specs: dotted paths (as sweeps name their parameters), a spec flattened to its
// leaves, and the hyper-parameters a table shows in short.
import { num } from "./format.js";

// The value at a dotted path ("solver.params.momentum"); undefined when any step is missing.
export function valueAt(spec, path) {
  let value = spec;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object" || !(key in value)) return undefined;
    value = value[key];
  }
  return value;
}

// {dotted path: leaf value}. Arrays are leaves (a layer list like hidden: [64, 32] reads as one
// value). An empty object adds nothing: `solver.params: {}` says no more than a spec without
// params, and beside `{momentum: 0.9}` the run already reads "—" under solver.params.momentum.
export function flatten(spec, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(spec || {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      flatten(value, path, out);
    } else {
      out[path] = value;
    }
  }
  return out;
}

// What a run's best epoch is the best of, read from its stored spec as the worker reads it
// (service/training/decisions.py, stored_best_criterion and stop_improved): early stopping's
// monitor, mode, min_delta and baseline when it is on, else the ReduceLROnPlateau monitor and
// mode (a SequentialLR's last element), else the lowest val_loss.
export function bestCriterion(spec) {
  const stop = spec.early_stopping;
  if (stop) {
    return { metric: stop.monitor || "val_loss", mode: stop.mode || "min", minDelta: stop.min_delta || 0,
      baseline: stop.baseline ?? null };
  }
  let sched = spec.scheduler;
  if (sched && sched.type === "SequentialLR") sched = (sched.schedulers || []).at(-1);
  if (sched && sched.type === "ReduceLROnPlateau") {
    return { metric: sched.monitor || "val_loss", mode: (sched.params || {}).mode || "min", minDelta: 0, baseline: null };
  }
  return { metric: "val_loss", mode: "min", minDelta: 0, baseline: null };
}

// A leaf for a table cell: numbers rounded as everywhere (3 significant digits), the rest as JSON.
export function leafText(value) {
  if (value === undefined) return "—";
  if (typeof value === "number") return num(value, 3);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

// The scheduler in short: "constant" without one, a composition with its parts.
export function schedulerText(spec) {
  const s = spec.scheduler;
  if (!s) return "constant";
  return s.schedulers && s.schedulers.length ? `${s.type}(${s.schedulers.map((c) => c.type).join(", ")})` : s.type;
}
