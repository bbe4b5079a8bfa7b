"""required-labels in Python: every object (optionally only some kinds) carries the
configured labels. The same contract, rule and messages as the Rust plugin.

Config: {"labels": ["app.kubernetes.io/name", ...], "kinds": ["Deployment", "apps/v1/StatefulSet"]}
Rule: required-labels/missing (error, path /metadata/labels).
"""

import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    Diagnostic,
    Metadata,
    ObjectRef,
    PluginError_InvalidConfig,
    PluginError_InvalidInput,
    Severity,
)

RULE = "required-labels/missing"
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_DNS = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _invalid_config(message):
    return Err(PluginError_InvalidConfig(message))


def _label_key_error(key):
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not _DNS.fullmatch(prefix)):
        return f"key {json.dumps(key)}: prefix is not a DNS subdomain"
    if not _NAME.fullmatch(name):
        return f"key {json.dumps(key)}: name is not a qualified name"
    return None


def _parse_config(text):
    try:
        config = json.loads(text) if text.strip() else None
    except ValueError as e:
        raise _invalid_config(f"config is not JSON: {e}")
    if config is None:
        raise _invalid_config('missing config: expected {"labels": ["<label key>", ...]}')
    if not isinstance(config, dict):
        raise _invalid_config("config must be a JSON object")
    unknown = sorted(set(config) - {"labels", "kinds"})
    if unknown:
        raise _invalid_config(f"unknown field `{unknown[0]}`, expected `labels` or `kinds`")
    if "labels" not in config:
        raise _invalid_config("missing field `labels`")
    labels, kinds = config["labels"], config.get("kinds", [])
    if not isinstance(labels, list) or not all(isinstance(k, str) for k in labels):
        raise _invalid_config("invalid type: `labels` must be a list of strings")
    if not labels:
        raise _invalid_config("`labels` must list at least one label key")
    for key in labels:
        error = _label_key_error(key)
        if error:
            raise _invalid_config(f"labels: {error}")
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise _invalid_config("invalid type: `kinds` must be a list of strings")
    for k in kinds:
        if not k or k.startswith("/") or k.endswith("/"):
            raise _invalid_config(f"kinds: {json.dumps(k)} is not a kind or apiVersion/kind")
    return labels, kinds


def _matches(ref, selectors):
    if not selectors:
        return True
    for selector in selectors:
        api_version, _, kind = selector.rpartition("/")
        if "/" not in selector and selector == ref.kind:
            return True
        if "/" in selector and api_version == ref.api_version and kind == ref.kind:
            return True
    return False


class WitWorld(wit_world.WitWorld):
    def metadata(self):
        return Metadata(name="required-labels", version="0.1.0", kinds=[], config_schema=None)

    def validate_config(self, config):
        _parse_config(config)

    def validate(self, config, objects):
        labels, kinds = _parse_config(config)
        findings = []
        for obj in objects:
            if not _matches(obj.id, kinds):
                continue
            try:
                value = json.loads(obj.json)
            except ValueError as e:
                raise Err(PluginError_InvalidInput(f"{obj.id.kind} {obj.id.name} is not valid JSON: {e}"))
            present = (value.get("metadata") or {}).get("labels")
            present = present if isinstance(present, dict) else {}
            for key in labels:
                if key not in present:
                    ref = ObjectRef(obj.id.api_version, obj.id.kind, obj.id.namespace, obj.id.name)
                    findings.append(
                        Diagnostic(
                            severity=Severity.ERROR,
                            rule=RULE,
                            message=f"{obj.id.kind} {obj.id.name} is missing required label {json.dumps(key)}",
                            object=ref,
                            path="/metadata/labels",
                        )
                    )
        return findings
