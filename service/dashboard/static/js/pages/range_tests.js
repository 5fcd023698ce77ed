// Placeholder until this page lands (issue #17): says so instead of rendering nothing.
import { clear, h } from "../dom.js";

export async function renderRangeTests(root) {
  clear(root, h("h1", {}, "Coming soon"));
}
