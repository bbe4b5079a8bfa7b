// required-labels in JavaScript: every object (optionally only some kinds) carries the
// configured labels. The same contract, rule and messages as the Rust plugin
// (plugins/required-labels), built into a component for kitsync:plugin@0.1.0 `validator`
// by componentize-js (see ./build).
//
// Config: {"labels": ["app.kubernetes.io/name", ...], "kinds": ["Deployment", "apps/v1/StatefulSet"]}
// Rule: required-labels/missing (error, path /metadata/labels).
//
// componentize-js maps the WIT world onto this module's exports: records are objects with
// camelCase fields, an `option` is a value or `undefined`, an `enum` case is its name, a
// `variant` is `{tag, val}`, and throwing from a function returning `result<_, E>` returns
// `err(E)` (the thrown value, or its `payload`).

const RULE = "required-labels/missing";
const NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const DNS = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const CONFIG_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  title: "required-labels config",
  type: "object",
  properties: {
    labels: {
      description: "Label keys every selected object must carry.",
      type: "array",
      minItems: 1,
      items: { type: "string", minLength: 1 },
    },
    kinds: {
      description:
        "Kinds to check (`Deployment` or `apps/v1/Deployment`); empty or absent means every kind.",
      type: "array",
      items: { type: "string", minLength: 1 },
    },
  },
  required: ["labels"],
  additionalProperties: false,
};

function pluginError(tag, message) {
  return { tag, val: message };
}

function invalidConfig(message) {
  return pluginError("invalid-config", message);
}

function labelKeyError(key) {
  const slash = key.lastIndexOf("/");
  const prefix = slash < 0 ? "" : key.slice(0, slash);
  const name = key.slice(slash + 1);
  if (slash >= 0 && (prefix.length > 253 || !DNS.test(prefix))) {
    return `key ${JSON.stringify(key)}: prefix is not a DNS subdomain`;
  }
  if (!NAME.test(name)) {
    return `key ${JSON.stringify(key)}: name is not a qualified name`;
  }
  return null;
}

const isStringList = (v) => Array.isArray(v) && v.every((s) => typeof s === "string");

function parseConfig(text) {
  let config;
  try {
    config = text.trim() ? JSON.parse(text) : null;
  } catch (e) {
    throw invalidConfig(`config is not JSON: ${e.message}`);
  }
  if (config === null) {
    throw invalidConfig('missing config: expected {"labels": ["<label key>", ...]}');
  }
  if (typeof config !== "object" || Array.isArray(config)) {
    throw invalidConfig("config must be a JSON object");
  }
  const unknown = Object.keys(config)
    .filter((k) => k !== "labels" && k !== "kinds")
    .sort();
  if (unknown.length > 0) {
    throw invalidConfig(`unknown field \`${unknown[0]}\`, expected \`labels\` or \`kinds\``);
  }
  if (!("labels" in config)) {
    throw invalidConfig("missing field `labels`");
  }
  const labels = config.labels;
  const kinds = config.kinds ?? [];
  if (!isStringList(labels)) {
    throw invalidConfig("invalid type: `labels` must be a list of strings");
  }
  if (labels.length === 0) {
    throw invalidConfig("`labels` must list at least one label key");
  }
  for (const key of labels) {
    const error = labelKeyError(key);
    if (error) {
      throw invalidConfig(`labels: ${error}`);
    }
  }
  if (!isStringList(kinds)) {
    throw invalidConfig("invalid type: `kinds` must be a list of strings");
  }
  for (const k of kinds) {
    if (!k || k.startsWith("/") || k.endsWith("/")) {
      throw invalidConfig(`kinds: ${JSON.stringify(k)} is not a kind or apiVersion/kind`);
    }
  }
  return { labels, kinds };
}

// `Deployment` selects that kind in every group; `apps/v1/Deployment` only that apiVersion.
function matches(ref, selectors) {
  if (selectors.length === 0) {
    return true;
  }
  return selectors.some((selector) => {
    const slash = selector.lastIndexOf("/");
    if (slash < 0) {
      return selector === ref.kind;
    }
    return selector.slice(0, slash) === ref.apiVersion && selector.slice(slash + 1) === ref.kind;
  });
}

export function metadata() {
  return {
    name: "required-labels",
    version: "0.1.0",
    kinds: [],
    configSchema: JSON.stringify(CONFIG_SCHEMA),
  };
}

export function validateConfig(config) {
  parseConfig(config);
}

export function validate(config, objects) {
  const { labels, kinds } = parseConfig(config);
  const findings = [];
  for (const object of objects) {
    const id = object.id;
    if (!matches(id, kinds)) {
      continue;
    }
    let value;
    try {
      value = JSON.parse(object.json);
    } catch (e) {
      throw pluginError("invalid-input", `${id.kind} ${id.name} is not valid JSON: ${e.message}`);
    }
    const present = value?.metadata?.labels;
    const has = (key) =>
      present !== null &&
      typeof present === "object" &&
      !Array.isArray(present) &&
      Object.prototype.hasOwnProperty.call(present, key);
    for (const key of labels) {
      if (!has(key)) {
        findings.push({
          severity: "error",
          rule: RULE,
          message: `${id.kind} ${id.name} is missing required label ${JSON.stringify(key)}`,
          object: {
            apiVersion: id.apiVersion,
            kind: id.kind,
            namespace: id.namespace,
            name: id.name,
          },
          path: "/metadata/labels",
        });
      }
    }
  }
  return findings;
}
