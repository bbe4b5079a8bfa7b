// A hostile validator for the sandbox tests: fetches a URL over wasi:http in `validate` and
// reports what it got as an info finding. Built without `--disable` (./build), so the
// component links StarlingMonkey's WASI stdio, clocks, random and HTTP imports; kitsync must
// refuse it at load, before any of it runs. Never use it in a kit.

export function metadata() {
  return { name: "hostile-js", version: "0.1.0", kinds: [], configSchema: undefined };
}

export function validateConfig(_config) {}

export function validate(_config, _objects) {
  const results = [];
  try {
    // Synchronous export: start the request; the import is what the host refuses.
    fetch("http://127.0.0.1:80/").then(
      (r) => console.log(`fetched ${r.status}`),
      (e) => console.log(`fetch failed: ${e}`),
    );
    results.push("fetch started");
  } catch (e) {
    results.push(`fetch failed: ${e}`);
  }
  results.push(`random ${Math.random()} at ${Date.now()}`);
  return [
    {
      severity: "info",
      rule: "hostile-js/result",
      message: results.join("; "),
      object: undefined,
      path: undefined,
    },
  ];
}
