// A poller that never overlaps itself (the next tick waits for the last call) and stops when the
// page is left, so a slow API is never hit by a pile of requests.

let active = [];

// `intervalMs`: milliseconds, or a function that gives them after each call (a page that polls
// faster while something runs).
export function poll(fn, intervalMs) {
  let stopped = false;
  let timer = null;
  const handle = {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
  async function tick() {
    if (stopped) return;
    let again = true;
    try {
      again = (await fn()) !== false; // fn returns false when there is nothing more to wait for
    } catch (err) {
      // A failed call (service restarting, token missing) is shown by the page; keep polling.
      console.warn("poll failed:", err.message || err);
    }
    if (!stopped && again) timer = setTimeout(tick, typeof intervalMs === "function" ? intervalMs() : intervalMs);
  }
  active.push(handle);
  tick();
  return handle;
}

// Anything else with a stop() that must end with the page (an event stream, sse.js).
export function track(handle) {
  active.push(handle);
}

// Called by the router before it renders another page.
export function stopAll() {
  active.forEach((p) => p.stop());
  active = [];
}
