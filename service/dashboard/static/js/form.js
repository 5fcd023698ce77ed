// The create form, generated from the spec's JSON schema (`/openapi.json` →
// components.schemas.ExperimentSpec and the schemas it references) plus `GET /v1/catalog` for the
// solver and scheduler params (torch's kwargs and defaults), `GET /v1/datasets`, and
// `GET /v1/workers` for the plugin models and datasets the workers offer (their factories' params).
//
// Every input sits in a `.field` whose `data-loc` is its spec path ("scheduler.params.gamma"), the
// same path a 422's `loc` names after "body", so an API error lands on the field it is about.
import { h, clear } from "./dom.js";

const METRICS = {
  classification: ["val_loss", "val_accuracy", "train_loss"],
  regression: ["val_loss", "val_mae", "train_loss"],
};
// Starting values for fields the schema requires without a default, once their section is on.
const UI_DEFAULTS = { "warmup.epochs": 3 };
// The direction a monitor improves in, as the API decides a sweep's mode: up for accuracy.
const modeFor = (metric) => (metric === "val_accuracy" ? "max" : "min");
const LABELS = { base_lr: "base LR", batch_size: "batch size", checkpoint_every: "checkpoint every" };
// The built-in models and the ModelSpec fields each one reads (service/training/spec.py); any
// other model type is a plugin's, which takes its factory's arguments in `params` instead.
const MODEL_FIELDS = {
  linear: [],
  mlp: ["hidden", "activation", "dropout", "norm"],
  cnn: ["channels", "batchnorm", "pool", "hidden", "activation", "dropout"],
  resnet: ["depth", "width"],
};

// What the registered workers offer, merged as the API merges it when it checks a spec: every
// worker counts (a queued run waits for one), and the newest worker's entry of a name wins.
// `workers` is GET /v1/workers's items, newest first.
export function offeredPlugins(workers) {
  const merged = { models: {}, datasets: {} };
  for (const w of [...(workers || [])].reverse()) {
    for (const kind of ["models", "datasets"]) Object.assign(merged[kind], (w.plugins && w.plugins[kind]) || {});
  }
  return merged;
}

export function pluginLabel(name, entry) {
  return entry && entry.package ? `${name} (${entry.package} ${entry.version})` : `${name} (not offered by any worker)`;
}

// A plugin named by a cloned spec that no worker offers now: its params as loosely typed inputs.
function unknownPlugin(params) {
  return { params: Object.keys(params || {}).map((name) => ({ name, required: false, default: null, kind: null })) };
}

// ---- schema helpers -------------------------------------------------------------------------

function resolver(schemas) {
  const deref = (s) => (s && s.$ref ? schemas[s.$ref.split("/").pop()] : s);
  // `X | None` comes as anyOf [X, null]: the field is optional (a toggle or an empty input).
  return (s) => {
    if (s && s.anyOf) {
      const branches = s.anyOf.filter((b) => b.type !== "null");
      const nullable = branches.length < s.anyOf.length;
      return { ...s, ...deref(branches[0]), anyOf: undefined, nullable, default: s.default };
    }
    return deref(s);
  };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Params typed as text: "0.9, 0.999" → [0.9, 0.999]; "30" → 30; "true" → true; "" → undefined.
export function parseLoose(text) {
  const t = text.trim();
  if (t === "") return undefined;
  try {
    return JSON.parse(t);
  } catch {
    if (t.includes(",")) return t.split(",").map((p) => parseLoose(p)).filter((v) => v !== undefined);
    return t;
  }
}

function showLoose(value) {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map((v) => JSON.stringify(v)).join(", ");
  return typeof value === "string" ? value : JSON.stringify(value);
}

function setPath(obj, path, value) {
  let cur = obj;
  path.slice(0, -1).forEach((key) => {
    if (cur[key] === undefined) cur[key] = {};
    cur = cur[key];
  });
  cur[path[path.length - 1]] = value;
}

// Python's round() (half to even), so split sizes and steps per epoch match the server's.
function pyRound(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function stepsPerEpoch(dataset, spec) {
  if (!dataset) return 1;
  const n = dataset.n_samples;
  const { train = 0.8, val = 0.2, test = 0 } = spec.split || {};
  const nVal = pyRound(n * val);
  const nTest = pyRound(n * test);
  const rest = n - nVal - nTest;
  const nTrain = Math.abs(train + val + test - 1) < 1e-9 ? rest : Math.min(pyRound(n * train), rest);
  return Math.max(1, Math.ceil(Math.max(nTrain, 1) / (spec.batch_size || 64)));
}

// ---- composed schedules ----------------------------------------------------------------------

// The compositions, whether or not the catalog lists them (it flags them `composite`).
const COMPOSITES = ["SequentialLR", "ChainedScheduler"];
const isComposite = (info) => Boolean(info.composite) || COMPOSITES.includes(info.type);

// The catalog's schedulers split into those an element may be and the compositions.
export function schedulerTypes(catalog) {
  const simple = catalog.schedulers.filter((s) => !isComposite(s));
  const composed = catalog.schedulers.filter(isComposite);
  for (const type of COMPOSITES) {
    if (!composed.some((s) => s.type === type)) composed.push({ type, params: [], interval: "epoch", composite: true });
  }
  return { simple, composed };
}

// torch's ChainedScheduler example: a tenth of the LR for 2 epochs, under an exponential decay.
const CHAINED_EXAMPLE = [
  { type: "ConstantLR", params: { factor: 0.1, total_iters: 2 } },
  { type: "ExponentialLR", params: { gamma: 0.9 } },
];

// A SequentialLR spanning `n` epochs (or steps): "wsd" (warmup-stable-decay) warms up linearly
// from 1% over ~5% of the run, holds base_lr, and decays linearly to 1% over the last ~20%;
// "cosine" warms up the same way, then anneals to 0 over the rest. Every phase is at least one
// epoch, so the milestones stay strictly increasing on short runs.
// A phase of k epochs takes k - 1 steps from its first epoch (its step 0) to its last: the
// decay's LinearLR and the cosine reach their end (1%, 0) in the run's last epoch, not one after.
export function schedulePreset(name, n) {
  const warm = Math.max(1, Math.round(0.05 * n));
  const warmup = { type: "LinearLR", params: { start_factor: 0.01, end_factor: 1.0, total_iters: warm } };
  if (name === "cosine") {
    return { type: "SequentialLR", schedulers: [warmup,
      { type: "CosineAnnealingLR", params: { T_max: Math.max(1, n - warm - 1) } }], params: { milestones: [warm] } };
  }
  const decay = Math.max(1, Math.round(0.2 * n));
  const stable = Math.max(1, n - warm - decay);
  return {
    type: "SequentialLR",
    schedulers: [
      warmup,
      // factor 1.0: the LR stays at base_lr for as long as the phase lasts
      { type: "ConstantLR", params: { factor: 1.0, total_iters: stable } },
      // A one-epoch decay (a run under 8 epochs) is that epoch at 1%.
      { type: "LinearLR", params: { start_factor: decay > 1 ? 1.0 : 0.01, end_factor: 0.01, total_iters: Math.max(1, decay - 1) } },
    ],
    params: { milestones: [warm, warm + stable] },
  };
}

// ---- the form -------------------------------------------------------------------------------

export function buildSpecForm(container, { schemas, catalog, datasets, plugins = {}, initial = {}, onChange }) {
  const resolve = resolver(schemas);
  const fields = new Map(); // loc → .field element
  let readers = []; // [path, read()] for every leaf: read() returns undefined to leave it out
  const general = h("div", { class: "form-errors" });
  const form = h("form", { class: "spec-form", novalidate: true, autocomplete: "off" });

  function field(path, labelText, control, { hint, required } = {}) {
    const loc = path.join(".");
    const el = h("div", { class: "field", "data-loc": loc },
      h("label", { for: `f-${loc}`, class: required ? "required" : "" }, labelText),
      control,
      hint ? h("div", { class: "hint" }, hint) : null,
      h("div", { class: "field-error", role: "alert" }));
    if (control.id === "" && control.tagName !== "DIV") control.id = `f-${loc}`;
    control.name = control.name || loc;
    fields.set(loc, el);
    return el;
  }

  function fieldset(path, legend, ...children) {
    const loc = path.join(".");
    // A fieldset is a place for errors too ("solver.params": torch refused the combination).
    const el = h("fieldset", { "data-loc": loc }, h("legend", {}, legend), ...children,
      h("div", { class: "field-error", role: "alert" }));
    if (loc) fields.set(loc, el);
    return el;
  }

  const initialAt = (path) => path.reduce((o, k) => (o == null ? undefined : o[k]), initial);

  // One leaf from its JSON schema; `read` pushes into `readers` unless the caller handles it.
  function schemaLeaf(path, schema, { value, live = () => true, into = readers } = {}) {
    const label = LABELS[path[path.length - 1]] || schema.title || path[path.length - 1];
    const start = value !== undefined ? value : schema.default !== undefined ? schema.default : UI_DEFAULTS[path.join(".")];
    let control;
    let read;
    if (schema.enum) {
      control = h("select", {}, schema.enum.map((v) => h("option", { value: v }, v)));
      control.value = start ?? schema.enum[0];
      read = () => control.value;
    } else if (schema.type === "boolean") {
      control = h("input", { type: "checkbox", checked: Boolean(start) });
      read = () => control.checked;
    } else if (schema.type === "integer" || schema.type === "number") {
      // Emptied, it is left out (null where the schema allows it) and the API takes its default:
      // the placeholder says which, and the preview (pages/new.js) takes the same.
      const fallback = schema.nullable || schema.default == null ? undefined : `default ${schema.default}`;
      control = h("input", { type: "number", step: schema.type === "integer" ? "1" : "any", value: start ?? "",
        placeholder: fallback });
      read = () => (control.value === "" ? (schema.nullable ? null : undefined) : Number(control.value));
    } else if (schema.type === "array") {
      control = h("input", { type: "text", value: showLoose(start), placeholder: "comma-separated" });
      read = () => {
        const v = parseLoose(control.value);
        return v === undefined ? [] : Array.isArray(v) ? v : [v];
      };
    } else if (schema.type === "object" && schema.additionalProperties) {
      // A string map (tags): one key=value per line.
      control = h("textarea", { rows: 2, placeholder: "key=value, one per line" },
        Object.entries(start || {}).map(([k, v]) => `${k}=${v}`).join("\n"));
      read = () => Object.fromEntries(control.value.split("\n").map((l) => l.trim()).filter(Boolean)
        .map((l) => { const i = l.indexOf("="); return i < 0 ? [l, ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()]; }));
    } else {
      control = h("input", { type: "text", value: start ?? "" });
      read = () => (control.value === "" && schema.nullable ? null : control.value);
    }
    into.push([path, () => (live() ? read() : undefined)]);
    return field(path, label, control, { hint: schema.description });
  }

  // An object from its schema: each property, with overrides for the catalog-driven parts.
  function schemaObject(path, schema, live) {
    return Object.entries(schema.properties).map(([key, propSchema]) => {
      const p = [...path, key];
      const custom = CUSTOM[p.join(".")];
      if (custom) return custom(p, resolve(propSchema), live);
      const s = resolve(propSchema);
      if (s.type === "object" && s.properties) return optionalSection(p, s, live);
      return schemaLeaf(p, s, { value: initialAt(p), live });
    });
  }

  // warmup, early_stopping (nullable objects) get an "enable" toggle; split and model are always on.
  // A section on by default (divergence: the schema's default is an object, null turns it off)
  // starts checked, and unchecked it is sent as null.
  function optionalSection(path, schema, parentLive = () => true) {
    const present = initialAt(path);
    const onByDefault = schema.default !== undefined && schema.default !== null;
    const toggle = schema.nullable
      ? h("input", { type: "checkbox", checked: present === undefined ? onByDefault : present !== null,
        name: `${path.join(".")}.enabled` })
      : null;
    if (toggle && onByDefault) readers.push([path, () => (parentLive() && !toggle.checked ? null : undefined)]);
    const live = () => parentLive() && (!toggle || toggle.checked);
    const body = h("div", { class: "section-body" }, schemaObject(path, schema, live));
    const sync = () => (body.hidden = !live());
    if (toggle) toggle.addEventListener("change", sync);
    sync();
    const legend = toggle ? h("label", {}, toggle, " ", path[path.length - 1].replace("_", " ")) : path[path.length - 1];
    return fieldset(path, legend, body);
  }

  // ---- catalog-driven parts ----

  // `origin` names whose defaults these are (torch's, or a plugin factory's); `into`: where the
  // readers go (a section that builds its value itself keeps its own list).
  // `owner`: the spec path holding `params` ("solver", or ["scheduler", "schedulers", 1] for an
  // element of a composed schedule).
  function paramsBlock(owner, info, initialParams, live, { origin = "torch", into = readers, note } = {}) {
    const path = [...[owner].flat(), "params"];
    const rows = info.params.map((p) => {
      const ppath = [...path, p.name];
      const given = initialParams && p.name in initialParams ? initialParams[p.name] : undefined;
      const start = given !== undefined ? given : p.default;
      let control;
      let read;
      if (p.kind === "boolean") {
        control = h("input", { type: "checkbox", checked: Boolean(start) });
        read = () => control.checked;
      } else if (Array.isArray(p.choices) && p.choices.length) {
        // The values torch's signature lists (ReduceLROnPlateau's mode, threshold_mode).
        control = h("select", {}, p.choices.map((c) => h("option", { value: c }, String(c))));
        control.value = p.choices.includes(start) ? start : p.choices[0];
        read = () => control.value;
      } else if (p.kind === "number" || p.kind === "integer") {
        control = h("input", { type: "number", step: p.kind === "integer" ? "1" : "any", value: start ?? "" });
        read = () => (control.value === "" ? undefined : Number(control.value));
      } else if (p.name === "lr_lambda") {
        // An expression string such as "min(1, (epoch + 1) / 4)": sent as typed, never parsed
        // loosely (its commas are not a list, "0.95" is not a number).
        control = h("input", { type: "text", value: start ?? "", placeholder: "e.g. 0.95 ** epoch" });
        read = () => (control.value.trim() === "" ? undefined : control.value.trim());
      } else {
        // Lists, strings and kwargs whose default is None or not JSON: typed loosely.
        control = h("input", { type: "text", value: showLoose(start),
          placeholder: p.required ? "required" : p.default === null ? `None (${origin} default)` : "" });
        read = () => parseLoose(control.value);
      }
      // Send only what differs from torch's default (and what torch requires): the stored spec
      // then says what was chosen, not a copy of torch's signature.
      into.push([ppath, () => {
        if (!live()) return undefined;
        const v = read();
        return v === undefined || (!p.required && same(v, p.default)) ? undefined : v;
      }]);
      return field(ppath, p.name, control, {
        required: p.required,
        hint: p.required ? "required" : `${origin} default: ${p.default === null ? "None" : showLoose(p.default)}`,
      });
    });
    return fieldset(path, `${info.type} params`, rows.length ? rows : h("p", { class: "muted" }, "no params"),
      note ? h("p", { class: "muted" }, note) : null);
  }

  function solverSection(path, _schema, live) {
    const init = initialAt(path) || {};
    const byType = Object.fromEntries(catalog.solvers.map((s) => [s.type, s]));
    const select = h("select", {}, catalog.solvers.map((s) => h("option", { value: s.type }, s.type)));
    select.value = init.type || "SGD";
    const holder = h("div");
    const hyper = h("input", { type: "checkbox", checked: Boolean(init.hypergradient) });
    const hyperLr = h("input", { type: "number", step: "any", value: init.hypergradient ? init.hypergradient.hyper_lr : 1e-4 });
    const hyperRow = field([...path, "hypergradient"], "hypergradient", h("div", { class: "row" }, hyper, h("label", {}, "hyper_lr ", hyperLr)),
      { hint: "the LR adapts itself every step (Baydin et al. 2018); no scheduler or warmup" });
    const render = (params) => {
      // A new type has other kwargs: forget the old type's readers with its inputs.
      readers = readers.filter(([p]) => !p.join(".").startsWith("solver.params"));
      clear(holder, paramsBlock("solver", byType[select.value], params, live));
      hyperRow.hidden = !catalog.hypergradient_solvers.includes(select.value);
    };
    readers.push([[...path, "type"], () => (live() ? select.value : undefined)]);
    readers.push([[...path, "hypergradient"], () =>
      live() && !hyperRow.hidden && hyper.checked ? { hyper_lr: Number(hyperLr.value) } : undefined]);
    select.addEventListener("change", () => render({}));
    render(init.params || {});
    return fieldset(path, "solver", field([...path, "type"], "type", select, { hint: "torch.optim class" }), holder, hyperRow);
  }

  // The scheduler: none, one torch class with its params, or a composition (SequentialLR,
  // ChainedScheduler) edited as a list of element editors (compositeEditor) with presets.
  function schedulerSection(path, schema, live) {
    const init = initialAt(path) || null;
    const { simple, composed } = schedulerTypes(catalog);
    const byType = Object.fromEntries([...simple, ...composed].map((s) => [s.type, s]));
    const none = catalog.constant_scheduler;
    const select = h("select", {},
      h("option", { value: none }, `${none} (constant LR)`),
      simple.map((s) => h("option", { value: s.type }, s.type)),
      h("optgroup", { label: "composed" }, composed.map((s) => h("option", { value: s.type }, s.type))));
    select.value = init ? init.type : none;
    const props = schema.properties;
    const monitor = metricSelect(init ? init.monitor : "val_loss", [...path, "params", "mode"].join("."));
    const interval = h("select", {}, h("option", { value: "" }, "default"),
      props.interval.anyOf[0].enum.map((v) => h("option", { value: v }, v)));
    interval.value = init && init.interval ? init.interval : "";
    const monitorRow = field([...path, "monitor"], "monitor", monitor, { hint: "the metric ReduceLROnPlateau watches" });
    const intervalRow = field([...path, "interval"], "interval", interval);
    const holder = h("div");
    const active = () => live() && select.value !== none;
    let composite = null; // the element editors while a composed type is chosen
    // A composition steps per batch by default when one of its elements does (as the server says).
    const defaultInterval = () => {
      const types = composite ? composite.types() : [select.value];
      return types.some((t) => byType[t] && byType[t].interval === "step") ? "step" : "epoch";
    };
    const syncInterval = () => {
      if (byType[select.value]) interval.options[0].textContent = `default (${defaultInterval()})`;
      if (composite) composite.relabel();
    };
    const unit = () => interval.value || defaultInterval();
    // `start`: the scheduler spec to show ({type, params, schedulers}); {} for a type just chosen.
    const render = (start) => {
      readers = readers.filter(([p]) => !/^scheduler\.(params|schedulers)(\.|$)/.test(p.join(".")));
      const info = byType[select.value];
      composite = info && isComposite(info) ? compositeEditor(path, select.value, start, simple, active, { unit, onTypes: syncInterval }) : null;
      clear(holder, composite ? composite.el : info ? paramsBlock("scheduler", info, start.params || {}, active) : null);
      monitorRow.hidden = select.value !== "ReduceLROnPlateau";
      intervalRow.hidden = !info;
      syncInterval();
      refreshMetrics();
      // ReduceLROnPlateau chosen afresh: its mode starts from the monitor already picked.
      if (!(start.params && "mode" in start.params)) followMonitor(monitor);
    };
    // Presets fill a SequentialLR over the run after the warmup section's epochs (in steps with
    // interval "step"); the person edits the result like any composition.
    const span = () => {
      const spec = formValue();
      const epochs = Math.max(1, (spec.epochs || 20) - (spec.warmup ? spec.warmup.epochs || 0 : 0));
      return unit() === "step" ? epochs * stepsPerEpoch(currentDataset(), spec) : epochs;
    };
    const presetButton = (name, label) => h("button", { type: "button", class: "ghost", "data-preset": name, onclick: () => {
      select.value = "SequentialLR";
      render(schedulePreset(name, span()));
      if (onChange) onChange();
    } }, label);
    const presets = h("div", { class: "field presets" }, h("label", {}, "presets"),
      h("div", { class: "row" }, presetButton("wsd", "warmup-stable-decay"), presetButton("cosine", "cosine with warmup")),
      h("div", { class: "hint" }, "fill a SequentialLR over the epochs after the warmup: warmup 5%, then flat to 80% and a linear decay to 1% (or a cosine)"));
    readers.push([[...path, "type"], () => (active() ? select.value : undefined)]);
    readers.push([[...path, "monitor"], () => (active() && !monitorRow.hidden ? monitor.value : undefined)]);
    readers.push([[...path, "interval"], () => (active() && interval.value ? interval.value : undefined)]);
    // A composition chosen afresh starts from a schedule that runs: SequentialLR from the cosine
    // preset, ChainedScheduler from torch's own example; switching between the two keeps the
    // elements.
    select.addEventListener("change", () => {
      const kept = composite ? composite.values() : null;
      if (select.value === "SequentialLR") render(kept ? { schedulers: kept } : schedulePreset("cosine", span()));
      else if (select.value === "ChainedScheduler") render({ schedulers: kept || CHAINED_EXAMPLE });
      else render({});
    });
    interval.addEventListener("change", () => composite && composite.relabel());
    render(init || {});
    return fieldset(path, "scheduler", field([...path, "type"], "type", select, { hint: "torch.optim.lr_scheduler class" }),
      presets, holder, monitorRow, intervalRow);
  }

  // SequentialLR / ChainedScheduler: one editor per element (type, its params as paramsBlock
  // renders them, a monitor for ReduceLROnPlateau; up, down, remove), "add scheduler", and for
  // SequentialLR the milestones. Elements have no interval: they take the composition's. A
  // structural change re-renders the list from its values, so every field's data-loc is its
  // index ("scheduler.schedulers.1.params.gamma"), as a 422 names it.
  function compositeEditor(path, type, start, simple, live, { unit, onTypes }) {
    const sequential = type === "SequentialLR";
    const byType = Object.fromEntries(simple.map((s) => [s.type, s]));
    const listPath = [...path, "schedulers"];
    let elements = (start.schedulers || []).map((e) => ({ type: e.type, params: e.params || {}, monitor: e.monitor }));
    if (!elements.length) elements = [{ type: "ConstantLR", params: {} }];
    let editors = [];
    const list = h("div", { class: "composite-list" });
    const startMilestones = start.params && start.params.milestones;
    const milestones = h("input", { type: "text", value: Array.isArray(startMilestones) ? startMilestones.join(", ") : "",
      placeholder: "e.g. 5, 80" });
    const milestonesRow = sequential
      ? field([...path, "params", "milestones"], "milestones", milestones, { required: true,
        hint: "where each scheduler after the first starts, increasing, in the interval's units (epochs or steps) counted after the warmup" })
      : null;
    // "5, 80" → [5, 80]; what is not a number is sent as typed, for the server to name.
    const readMilestones = () => milestones.value.split(/[,\s]+/).filter(Boolean)
      .map((t) => (/^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t));

    function element(i, value) {
      const own = [...listPath, i];
      const local = [];
      const choices = simple.filter((s) => sequential || s.type !== "ReduceLROnPlateau");
      const sel = h("select", {}, choices.map((s) => h("option", { value: s.type }, s.type)));
      // A type this composition cannot hold (ReduceLROnPlateau kept from a SequentialLR) becomes
      // a ConstantLR that holds the LR.
      if (!choices.some((c) => c.type === value.type)) value = { type: "ConstantLR", params: { factor: 1.0 } };
      sel.value = value.type;
      const mon = metricSelect(value.monitor || "val_loss", [...own, "params", "mode"].join("."));
      const monRow = field([...own, "monitor"], "monitor", mon, { hint: "ReduceLROnPlateau: the last element only" });
      const params = h("div");
      const draw = (p) => {
        local.length = 0;
        clear(params, paramsBlock(own, byType[sel.value], p, live, { into: local }));
        monRow.hidden = sel.value !== "ReduceLROnPlateau";
      };
      draw(value.params);
      // The mode a person picked stays theirs when the list is redrawn (a move, an add, a remove).
      const modeSelect = () => {
        const holder = fields.get([...own, "params", "mode"].join("."));
        return holder && holder.querySelector(":scope > select");
      };
      if (value.modeChosen && modeSelect()) modeSelect().dataset.chosen = "1";
      sel.addEventListener("change", () => {
        draw({});
        followMonitor(mon);
        onTypes();
      });
      const move = (to) => {
        snapshot();
        const [moved] = elements.splice(i, 1);
        elements.splice(to, 0, moved);
        redraw();
      };
      const last = i === elements.length - 1;
      const title = h("span", {});
      const el = fieldset(own, title,
        h("div", { class: "row element-tools" },
          h("button", { type: "button", class: "ghost", "data-action": "up", disabled: i === 0, onclick: () => move(i - 1) }, "↑ up"),
          h("button", { type: "button", class: "ghost", "data-action": "down", disabled: last, onclick: () => move(i + 1) }, "↓ down"),
          h("button", { type: "button", class: "ghost", "data-action": "remove", disabled: elements.length === 1, onclick: () => {
            snapshot();
            elements.splice(i, 1);
            redraw();
          } }, "remove")),
        field([...own, "type"], "type", sel), params, monRow);
      el.classList.add("composite-element");
      const read = () => {
        const out = { type: sel.value, params: {} };
        for (const [p, r] of local) {
          const v = r();
          if (v !== undefined) out.params[p[p.length - 1]] = v;
        }
        if (!monRow.hidden) out.monitor = mon.value;
        return out;
      };
      const chosen = () => Boolean(modeSelect() && modeSelect().dataset.chosen);
      return { el, read, chosen, type: () => sel.value, title };
    }

    const snapshot = () => (elements = editors.map((e) => ({ ...e.read(), modeChosen: e.chosen() })));
    function relabel() {
      const starts = [0, ...(sequential ? readMilestones() : [])];
      editors.forEach((e, i) => {
        const from = sequential ? (starts[i] !== undefined ? ` · from ${unit()} ${starts[i]}` : "") : "";
        e.title.textContent = `${i + 1}. ${e.type()}${from}`;
      });
    }
    function redraw() {
      editors = elements.map((v, i) => element(i, v));
      clear(list, editors.map((e) => e.el));
      refreshMetrics();
      relabel();
      onTypes();
      if (onChange) onChange();
    }
    editors = elements.map((v, i) => element(i, v));
    clear(list, editors.map((e) => e.el));
    milestones.addEventListener("input", relabel);
    const add = h("button", { type: "button", class: "ghost", id: "add-scheduler", onclick: () => {
      snapshot();
      elements.push({ type: "ConstantLR", params: { factor: 1.0 } }); // holds the LR until edited
      redraw();
    } }, "+ add scheduler");

    readers.push([listPath, () => (live() ? editors.map((e) => e.read()) : undefined)]);
    readers.push(sequential
      ? [[...path, "params", "milestones"], () => (live() ? readMilestones() : undefined)]
      : [[...path, "params"], () => (live() ? {} : undefined)]);
    const el = fieldset(listPath, sequential ? "SequentialLR: one after another" : "ChainedScheduler: all at once, factors multiplied", list, h("div", { class: "toolbar" }, add), milestonesRow);
    return { el, types: () => editors.map((e) => e.type()), values: () => editors.map((e) => e.read()), relabel };
  }

  // Metric choices follow the dataset's task; kept in a list so a dataset change updates them.
  // `modeLoc`: the spec path of the mode that follows this monitor (followMonitor).
  const metricSelects = [];
  function metricSelect(value, modeLoc) {
    const select = h("select", {});
    select.dataset.want = value || "val_loss";
    if (modeLoc) {
      select.dataset.modeLoc = modeLoc;
      select.addEventListener("change", () => followMonitor(select));
    }
    metricSelects.push(select);
    return select;
  }
  function refreshMetrics() {
    const task = currentDataset() ? currentDataset().task : "classification";
    for (const select of metricSelects) {
      const before = select.value;
      const want = before || select.dataset.want;
      clear(select, METRICS[task].map((m) => h("option", { value: m }, m)));
      select.value = METRICS[task].includes(want) ? want : "val_loss";
      // Set in code, the value fires no change event: the mode follows it here.
      if (before && before !== select.value) followMonitor(select);
    }
  }
  // Accuracy improves upwards: a mode (early stopping's, ReduceLROnPlateau's) follows its monitor,
  // changed by the person or by a dataset of another task, until the person picks the mode
  // themselves (a "min" mode on val_accuracy would stop a run, or cut its LR, while it gets
  // better). Only a mode on the form that offers min and max (CyclicLR's `mode` is another thing).
  function followMonitor(select) {
    const holder = select.dataset.modeLoc && fields.get(select.dataset.modeLoc);
    const mode = holder && form.contains(select) && form.contains(holder) ? holder.querySelector(":scope > select") : null;
    const want = modeFor(select.value);
    if (mode && !mode.dataset.chosen && [...mode.options].some((o) => o.value === want)) mode.value = want;
  }

  let datasetSelect;
  const currentDataset = () => datasets.find((d) => d.name === (datasetSelect && datasetSelect.value));

  // The built-in and uploaded datasets, then the plugin datasets the workers offer (a name that is
  // both is the built-in or upload, as on the server). A plugin dataset's factory params show
  // below the select; with none changed the spec names it as a plain string, else
  // {"type": NAME, "params": {...}}.
  function datasetField(path) {
    const init = initialAt(path);
    const initName = init && typeof init === "object" ? init.type : init;
    const initParams = init && typeof init === "object" ? init.params || {} : {};
    const known = new Set(datasets.map((d) => d.name));
    const offered = Object.fromEntries(Object.entries(plugins.datasets || {}).filter(([n]) => !known.has(n)));
    if (initName && !known.has(initName) && !offered[initName]) offered[initName] = unknownPlugin(initParams);
    const names = Object.keys(offered).sort();
    datasetSelect = h("select", {},
      datasets.map((d) => h("option", { value: d.name }, `${d.name} (${d.task}, ${d.n_samples} samples)`)),
      names.length ? h("optgroup", { label: "plugins" },
        names.map((n) => h("option", { value: n }, pluginLabel(n, offered[n])))) : null);
    datasetSelect.value = initName || "digits";
    const holder = h("div", { class: "plugin-params", id: "dataset-params" });
    let local = [];
    const render = (params) => {
      local = [];
      const entry = offered[datasetSelect.value];
      clear(holder, entry
        ? [entry.params.length || entry.var_keyword
          ? paramsBlock("dataset", { type: datasetSelect.value, params: entry.params }, params, () => true,
            { origin: "factory", into: local, note: entry.var_keyword ? "the factory also takes other keyword arguments (**kwargs)" : null })
          : null,
        h("p", { class: "muted" }, "a plugin dataset: its size and task are known once a worker builds it")]
        : null);
    };
    datasetSelect.addEventListener("change", () => {
      render({});
      refreshMetrics();
    });
    render(initName === datasetSelect.value ? initParams : {});
    readers.push([path, () => {
      const params = {};
      for (const [p, read] of local) {
        const v = read();
        if (v !== undefined) params[p[p.length - 1]] = v;
      }
      return Object.keys(params).length ? { type: datasetSelect.value, params } : datasetSelect.value;
    }]);
    return [field(path, "dataset", datasetSelect), holder];
  }

  // A built-in model shows only the fields its type reads; a plugin model one input per factory
  // param, and becomes {"type": NAME, "params": {...}} with only what differs from the factory's
  // defaults (and what it requires).
  function modelSection(path, schema, live) {
    const init = initialAt(path) || {};
    const builtins = Object.keys(MODEL_FIELDS);
    const offered = Object.fromEntries(Object.entries(plugins.models || {}).filter(([n]) => !(n in MODEL_FIELDS)));
    if (init.type && !(init.type in MODEL_FIELDS) && !offered[init.type]) offered[init.type] = unknownPlugin(init.params);
    const names = Object.keys(offered).sort();
    const select = h("select", {},
      h("optgroup", { label: "built-in" }, builtins.map((t) => h("option", { value: t }, t))),
      names.length ? h("optgroup", { label: "plugins" },
        names.map((n) => h("option", { value: n }, pluginLabel(n, offered[n])))) : null);
    select.value = init.type || (schema.properties.type && schema.properties.type.default) || "mlp";
    if (!select.value) select.value = "mlp";
    const holder = h("div", { class: "model-fields", id: "model-fields" });
    let local = [];
    const isPlugin = () => !(select.value in MODEL_FIELDS);
    const render = (start) => {
      local = [];
      const type = select.value;
      if (!isPlugin()) {
        const keys = MODEL_FIELDS[type].filter((k) => schema.properties[k]);
        clear(holder, keys.length
          ? keys.map((k) => schemaLeaf([...path, k], resolve(schema.properties[k]), { value: start[k], live, into: local }))
          : h("p", { class: "muted" }, "no fields: one linear layer"));
      } else {
        const entry = offered[type];
        clear(holder, paramsBlock("model", { type, params: entry.params }, start.params || {}, live,
          { origin: "factory", into: local, note: entry.var_keyword ? "the factory also takes other keyword arguments (**kwargs)" : null }));
      }
    };
    select.addEventListener("change", () => render({}));
    render(init.type === select.value ? init : {});
    readers.push([path, () => {
      if (!live()) return undefined;
      const out = isPlugin() ? { type: select.value, params: {} } : { type: select.value };
      for (const [p, read] of local) {
        const v = read();
        if (v !== undefined) setPath(out, p.slice(path.length), v);
      }
      return out;
    }]);
    return fieldset(path, "model",
      field([...path, "type"], "type", select, { hint: names.length ? "built-in, or a plugin a worker offers" : "built-in (no worker offers a plugin model)" }),
      holder);
  }

  function monitorField(path, _schema, live) {
    const select = metricSelect(initialAt(path), [...path.slice(0, -1), "mode"].join("."));
    readers.push([path, () => (live() ? select.value : undefined)]);
    return field(path, "monitor", select);
  }

  const CUSTOM = {
    dataset: datasetField,
    model: modelSection,
    solver: solverSection,
    scheduler: schedulerSection,
    "early_stopping.monitor": monitorField,
  };

  function formValue() {
    const out = {};
    for (const [path, read] of readers) {
      const v = read();
      if (v !== undefined) setPath(out, path, v);
    }
    return out;
  }

  // ---- assemble ----

  const spec = resolve(schemas.ExperimentSpec);
  clear(form, general, schemaObject([], spec, () => true));
  clear(container, form);
  refreshMetrics();
  form.addEventListener("input", () => onChange && onChange());
  form.addEventListener("change", (e) => {
    // The person's own mode stays (followMonitor); a mode set in code fires no change event.
    if (metricSelects.some((s) => s.dataset.modeLoc === e.target.name)) e.target.dataset.chosen = "1";
    if (onChange) onChange();
  });

  // The errors shown, by where they came from: "submit" (POST /v1/experiments' 422: every
  // mistake of the spec, kept until the next submit, or until the person edits the field an
  // error is on) and "preview" (the schedule preview's, which checks only the schedule's fields:
  // each preview replaces its own). Both show together; an item both give shows once.
  const errors = { submit: [], preview: [] };

  // The deepest field an item's loc names ("scheduler.params.gamma", else "scheduler.params",
  // …), skipping fields of a type no longer chosen (detached) or hidden by a toggle; else null.
  function placeOf(loc) {
    for (let n = loc.length; n > 0; n--) {
      const candidate = fields.get(loc.slice(0, n).join("."));
      if (candidate && form.contains(candidate) && !candidate.closest("[hidden]")) return candidate;
    }
    return null;
  }
  const locOf = (item) => (item.loc || []).filter((p, i) => !(i === 0 && p === "body"));

  // Each item on its field; above the form, a summary lists them all (one 422 carries every
  // mistake of a spec), each a link to its field; what matches no field is only there. Returns
  // the items placed nowhere.
  function renderErrors() {
    clear(general);
    for (const el of fields.values()) {
      el.classList.remove("has-error");
      const slot = el.querySelector(":scope > .field-error");
      if (slot) slot.textContent = "";
    }
    const unplaced = new Set();
    const summary = [];
    const seen = new Set();
    for (const item of [...errors.submit, ...errors.preview]) {
      const loc = locOf(item);
      const key = JSON.stringify([loc, item.msg]);
      if (seen.has(key)) continue;
      seen.add(key);
      const el = placeOf(loc);
      const where = loc.join(".") || "spec";
      summary.push(h("li", { "data-error-loc": loc.join(".") }, el
        ? h("a", { href: `#${el.dataset.loc}`, onclick: (event) => {
          event.preventDefault();
          el.scrollIntoView({ block: "center" });
          el.querySelector("input, select, textarea")?.focus();
        } }, where)
        : where, `: ${item.msg}`));
      if (!el) {
        unplaced.add(item);
        continue;
      }
      el.classList.add("has-error");
      const slot = el.querySelector(":scope > .field-error");
      slot.textContent = slot.textContent ? `${slot.textContent}; ${item.msg}` : item.msg;
    }
    if (summary.length) {
      clear(general, h("div", { class: "error-box", role: "alert", id: "error-summary", "data-count": summary.length },
        h("div", {}, summary.length === 1 ? "1 problem to fix:" : `${summary.length} problems to fix:`),
        h("ul", {}, summary)));
    }
    return unplaced;
  }

  // An edit answers the submit's errors on the edited field and the fieldsets around it: they go
  // (the next submit checks again); the others stay.
  function editedAt(target) {
    const kept = errors.submit.filter((item) => {
      const el = placeOf(locOf(item));
      return !(el && el.contains(target));
    });
    if (kept.length === errors.submit.length) return;
    errors.submit = kept;
    renderErrors();
  }
  form.addEventListener("input", (e) => editedAt(e.target));
  form.addEventListener("change", (e) => editedAt(e.target));

  return {
    form,
    value: formValue,
    dataset: currentDataset,
    // `source`: "submit" or "preview"; none: both.
    clearErrors(source) {
      for (const key of Object.keys(errors)) if (!source || key === source) errors[key] = [];
      renderErrors();
    },
    // Shows `items` (a 422's detail) as `source`'s errors, in place of its last ones. Only a
    // submit's errors scroll the page to the first one: the preview's come while the person
    // types, and must not pull the page away from the field being edited.
    showErrors(items, { source = "submit" } = {}) {
      errors[source] = items;
      const unplaced = renderErrors();
      if (source === "submit") {
        const first = form.querySelector(".has-error, .error-box");
        if (first) first.scrollIntoView({ block: "center" });
      }
      return items.filter((item) => unplaced.has(item));
    },
  };
}
