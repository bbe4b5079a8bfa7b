use super::*;
use crate::object::Object;
use serde_json::json;

fn object(value: Value) -> Object {
    Object::new(value, None).expect("identity")
}

fn violations(schemas: &Schemas, value: Value) -> Vec<Violation> {
    schemas
        .validate(&[object(value)])
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn builtin() -> Schemas {
    Schemas::new(catalog::DEFAULT_VERSION, false, []).expect("shipped schemas load")
}

fn rules(found: &[Violation]) -> Vec<(&'static str, &str)> {
    found.iter().map(|v| (v.rule, v.pointer.as_str())).collect()
}

#[test]
fn every_shipped_version_loads_with_its_kinds() {
    for shipped in catalog::SHIPPED {
        let schemas = Schemas::new(shipped.version, false, []).expect("loads");
        for kind in [("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "Job")] {
            assert!(
                schemas
                    .builtin
                    .kinds
                    .contains_key(&(kind.0.to_owned(), kind.1.to_owned())),
                "{} lacks {kind:?}",
                shipped.version
            );
        }
    }
    assert!(catalog::find("v1.35.4").is_ok());
    let refused = catalog::find("1.20").expect_err("not shipped");
    assert!(refused.contains("1.34, 1.35, 1.36"), "{refused}");
}

#[test]
fn a_valid_deployment_has_no_findings() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"example.com/note": "x"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                              "ports": [{"name": "http", "containerPort": 8080}],
                                              "resources": {"limits": {"cpu": 0.5, "memory": "512Mi"}},
                                              "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}}]}}}}),
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn numbers_where_strings_belong_are_flagged_for_quoting() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "annotations": {"example.com/port": 8080}, "labels": {"version": 1.1}},
               "data": {"enabled": true}}),
    );
    let mut got = rules(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("kitsync/schema-type", "/data/enabled"),
            ("kitsync/schema-type", "/metadata/annotations/example.com~1port"),
            ("kitsync/schema-type", "/metadata/labels/version"),
        ]
    );
    assert!(found.iter().all(|v| v.unquoted.is_some()));
    let annotation = found
        .iter()
        .find(|v| v.pointer.contains("annotations"))
        .expect("annotation");
    assert!(
        annotation.message.contains("annotation example.com/port"),
        "{}",
        annotation.message
    );
}

#[test]
fn port_names_label_syntax_and_names() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "Web_1", "labels": {"team": "a\"b", "bad key!": "x"}},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "8080"}]}}),
    );
    let mut got = rules(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("kitsync/syntax-label-key", "/metadata/labels/bad key!"),
            ("kitsync/syntax-label-value", "/metadata/labels/team"),
            ("kitsync/syntax-name", "/metadata/name"),
            ("kitsync/syntax-port-name", "/spec/ports/0/targetPort"),
        ]
    );
}

#[test]
fn keyed_lists_refuse_duplicate_keys() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [
                   {"name": "app", "image": "a", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
                   {"name": "app", "image": "b"}]}}),
    );
    let mut got = rules(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("kitsync/schema-duplicate-key", "/spec/containers/0/env/1"),
            ("kitsync/schema-duplicate-key", "/spec/containers/1"),
        ]
    );
}

#[test]
fn unknown_fields_warn_and_strict_refuses_them() {
    let value = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                       "spec": {"replica": 2, "selector": {"matchLabels": {"a": "b"}},
                                "template": {"metadata": {"labels": {"a": "b"}},
                                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let found = violations(&builtin(), value.clone());
    assert_eq!(
        rules(&found),
        vec![("kitsync/schema-unknown-field", "/spec/replica")]
    );
    assert_eq!(found[0].severity, Severity::Warning);
    assert!(
        found[0].message.contains("did you mean replicas?"),
        "{}",
        found[0].message
    );
    let strict = Schemas::new(catalog::DEFAULT_VERSION, true, []).expect("loads");
    assert_eq!(violations(&strict, value)[0].severity, Severity::Error);
}

#[test]
fn integers_booleans_quantities_and_required_fields() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": "2", "paused": "true", "selector": {"matchLabels": {"a": "b"}},
                        "template": {"spec": {"containers": [{"image": "i",
                                     "resources": {"requests": {"memory": "1GB"}}}]}}}}),
    );
    let mut got = rules(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "kitsync/schema-quantity",
                "/spec/template/spec/containers/0/resources/requests/memory"
            ),
            ("kitsync/schema-required", "/spec/template/spec/containers/0"),
            ("kitsync/schema-type", "/spec/paused"),
            ("kitsync/schema-type", "/spec/replicas"),
        ]
    );
}

#[test]
fn removed_api_versions_and_unknown_kinds() {
    let schemas = builtin();
    let found = schemas.validate(&[
        object(json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "a"}})),
        object(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}})),
        object(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "b"}})),
        object(
            json!({"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "p"}}),
        ),
    ]);
    let got: Vec<(usize, &str, Severity)> = found.iter().map(|(i, v)| (*i, v.rule, v.severity)).collect();
    assert_eq!(
        got,
        vec![
            (0, "kitsync/schema-api-version", Severity::Error),
            (1, "kitsync/schema-missing", Severity::Warning),
            (3, "kitsync/schema-api-version", Severity::Error),
        ]
    );
    assert!(
        found[2]
            .1
            .message
            .contains("group policy has no kind PodSecurityPolicy"),
        "{}",
        found[2].1.message
    );
    assert!(
        found[0].1.message.contains("use apps/v1"),
        "{}",
        found[0].1.message
    );
    // Without a schema for the kind, its metadata is still ObjectMeta.
    let labels = schemas.validate(&[object(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "labels": {"v": 1.1}}}),
    )]);
    let got: Vec<(&str, &str)> = labels.iter().map(|(_, v)| (v.rule, v.pointer.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("kitsync/schema-missing", "/kind"),
            ("kitsync/schema-type", "/metadata/labels/v")
        ]
    );
}

#[test]
fn custom_resources_follow_their_crd() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced",
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer"}, "color": {"type": "string", "enum": ["red", "blue"]},
                         "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}});
    let schemas = Schemas::new(catalog::DEFAULT_VERSION, false, [&crd]).expect("loads");
    let valid = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}},
                       "spec": {"size": 3, "color": "red", "extra": {"anything": [1]}}});
    assert!(violations(&schemas, valid).is_empty());
    let invalid = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": 1}},
                         "spec": {"color": "green", "shape": "round"}});
    let found = violations(&schemas, invalid);
    let mut got = rules(&found);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("kitsync/schema-enum", "/spec/color"),
            ("kitsync/schema-required", "/spec"),
            ("kitsync/schema-type", "/metadata/labels/a"),
            ("kitsync/schema-unknown-field", "/spec/shape"),
        ]
    );
}

#[test]
fn nulls_and_free_form_fields_pass() {
    let found = violations(
        &builtin(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "creationTimestamp": null},
               "data": {"a": "aGVsbG8="}, "stringData": {"b": "plain"}}),
    );
    assert!(found.is_empty(), "{found:#?}");
    let bad = violations(
        &builtin(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "not base64!"}}),
    );
    assert_eq!(rules(&bad), vec![("kitsync/schema-format", "/data/a")]);
    assert!(
        !bad[0].message.contains("not base64!"),
        "a Secret's value never appears"
    );
}
