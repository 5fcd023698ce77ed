// `/new`: the create form (js/form.js) with a live preview of its LR schedule, computed by the
// service's own schedule walk (`POST /v1/schedules/preview`) while the form is edited.
// `/new?clone=ID` starts from experiment ID's spec. A schedule that steps per batch (OneCycleLR,
// CyclicLR, any with interval "step") is previewed per optimizer step, so its peak shows.
import { api, ApiError } from "../api.js";
import { lineChart } from "../charts.js";
import { clear, errorBox, h } from "../dom.js";
import { buildSpecForm, offeredPlugins, stepsPerEpoch } from "../form.js";
import { num } from "../format.js";

const PREVIEW_DEBOUNCE_MS = 350;
const PREVIEW_MAX_EPOCHS = 10000; // the preview's own bound
const PREVIEW_POINTS = 2000; // per-step points asked for (min/max-downsampled by the service)

// Whether the spec's scheduler steps per batch: its interval, else its type's default (a
// composition's: "step" when one of its elements steps per batch), as the service decides.
function stepsPerBatch(spec, catalog) {
  const sched = spec.scheduler;
  if (!sched || sched.type === catalog.constant_scheduler) return false;
  if (sched.interval) return sched.interval === "step";
  const byType = Object.fromEntries(catalog.schedulers.map((s) => [s.type, s]));
  const types = sched.schedulers ? sched.schedulers.map((e) => e.type) : [sched.type];
  return types.some((t) => byType[t] && byType[t].interval === "step");
}

// `?from_range_test=ID` (a range test's "Train with this LR"): the test's spec at its suggested
// LR, rounded to 3 significant digits as the test's page shows it; `?spec=` (URL-encoded JSON):
// that spec. Either one takes the place of a clone's.
async function seededSpec(query) {
  const testId = query.get("from_range_test");
  if (testId) {
    const test = await api.rangeTest(testId, 2 ** 31 - 1); // from past any step: no points
    const lr = test.suggested_lr === null ? test.spec.base_lr : Number(test.suggested_lr.toPrecision(3));
    return { ...test.spec, base_lr: lr, name: `${test.name || `range test ${test.id}`} at lr ${lr}` };
  }
  if (!query.get("spec")) return null;
  try {
    return JSON.parse(query.get("spec"));
  } catch (err) {
    throw new Error(`?spec= is not JSON: ${err.message}`);
  }
}

export async function renderNew(root, query) {
  const seeded = await seededSpec(query);
  const cloneId = query.get("clone");
  const [openapi, catalog, datasets, workers, source] = await Promise.all([
    api.openapi(),
    api.catalog(),
    api.datasets(),
    // Without the registry the form still offers the built-ins; the plugins are simply missing.
    api.workers().catch(() => ({ items: [] })),
    cloneId ? api.experiment(cloneId) : Promise.resolve(null),
  ]);
  const initial = seeded ?? (source ? { ...source.spec, name: source.spec.name ? `${source.spec.name} (clone)` : "" } : {});

  const formHolder = h("div");
  const submit = h("button", { type: "button", id: "submit" }, "Create experiment");
  const status = h("span", { class: "muted" });
  const chartEl = h("div", { id: "preview-chart" });
  const previewInfo = h("div", { class: "preview-notes", id: "preview-notes" });

  clear(
    root,
    h("h1", {}, source ? `New experiment (clone of #${source.id})` : "New experiment"),
    h("div", { class: "form-layout" },
      h("div", {}, formHolder, h("div", { class: "toolbar" }, submit, status)),
      h("aside", { class: "preview-panel" },
        h("div", { class: "card" }, h("h2", {}, "LR schedule preview"), chartEl, previewInfo))),
  );

  // An emptied number field is left out of the spec and the API takes the schema's default (the
  // input's placeholder names it): the preview takes the same one, so it shows what a submit gets.
  const specDefaults = openapi.components.schemas.ExperimentSpec.properties;
  const orDefault = (spec, key) => spec[key] ?? specDefaults[key].default;

  const chart = lineChart(chartEl, { title: "learning rate per epoch (log)", series: [{ label: "lr" }], logY: true, stepped: true, height: 220 });
  let timer = null;
  let seq = 0;
  const form = buildSpecForm(formHolder, {
    schemas: openapi.components.schemas,
    catalog,
    datasets: datasets.datasets,
    plugins: offeredPlugins(workers.items),
    initial,
    onChange: () => {
      clearTimeout(timer);
      timer = setTimeout(preview, PREVIEW_DEBOUNCE_MS);
    },
  });

  async function preview() {
    const spec = form.value();
    const mine = ++seq;
    // Only the preview's own errors: a submit's stay until the next submit (form.js).
    form.clearErrors("preview");
    if (spec.solver && spec.solver.hypergradient) {
      clear(previewInfo, "With hypergradient descent the LR follows training's gradients: no preview.");
      return;
    }
    const epochs = Math.min(spec.epochs || 20, PREVIEW_MAX_EPOCHS);
    const body = {
      base_lr: orDefault(spec, "base_lr"),
      epochs,
      steps_per_epoch: stepsPerEpoch(form.dataset(), spec),
      solver: spec.solver,
      scheduler: spec.scheduler,
      warmup: spec.warmup,
      early_stopping: spec.early_stopping,
    };
    const perStep = stepsPerBatch(spec, catalog) && body.steps_per_epoch > 1;
    if (perStep) Object.assign(body, { resolution: "step", max_points: PREVIEW_POINTS });
    try {
      const out = await api.preview(body);
      if (mine !== seq) return; // a newer edit is already being previewed
      if (out.steps) {
        // Step k of epoch e at e + k / steps_per_epoch: the epoch axis keeps whole-epoch ticks.
        chart.setStepped(false);
        chart.setTitle("learning rate per optimizer step (log)");
        chart.setData(out.steps.map((p) => 1 + p.step / body.steps_per_epoch), [out.steps.map((p) => p.lr)]);
      } else {
        chart.setStepped(true);
        chart.setTitle("learning rate per epoch (log)");
        chart.setData(out.lr.map((_, i) => i + 1), [out.lr]);
      }
      chartEl.dataset.resolution = out.steps ? "step" : "epoch";
      // From the first step to the last, as the chart draws it: per epoch, `lr` is each epoch's
      // first step, so a per-batch schedule (OneCycleLR) would seem to end far above its last LR.
      const lrs = out.steps && out.steps.length ? out.steps.map((p) => p.lr) : out.lr;
      clear(previewInfo,
        h("div", { id: "preview-summary" }, `${out.epochs_run} epochs, ${body.steps_per_epoch} steps each; LR ${num(lrs[0])} → ${num(lrs[lrs.length - 1])}`),
        spec.base_lr === undefined ? h("div", { id: "preview-default-lr" }, `base LR empty: the default ${body.base_lr}`) : null,
        out.notes.map((n) => h("div", {}, n)));
    } catch (err) {
      if (mine !== seq) return;
      // The preview checks the schedule as a submit would: show its complaints on the fields now.
      if (err instanceof ApiError && err.status === 422) {
        form.showErrors(err.items, { source: "preview" });
        clear(previewInfo, h("div", { class: "error-box" }, "The schedule cannot be previewed until the marked fields are fixed."));
      } else {
        clear(previewInfo, errorBox(err));
      }
    }
  }

  submit.addEventListener("click", async () => {
    clearTimeout(timer);
    seq++; // a preview still in flight must not clear the submit's errors
    form.clearErrors();
    submit.disabled = true;
    status.textContent = "creating…";
    try {
      const created = await api.create(form.value());
      location.href = `/experiments/${created.id}`;
    } catch (err) {
      status.textContent = "";
      submit.disabled = false;
      if (err instanceof ApiError && err.status === 422) form.showErrors(err.items);
      else form.showErrors([{ loc: [], msg: err.message }]);
    }
  });

  preview();
}
