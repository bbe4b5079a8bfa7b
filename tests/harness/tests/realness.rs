//! Proves the test control plane is the real thing: storage, CRDs, server-side apply
//! conflicts, RBAC, impersonation, watches, the version, controllers and the audit log.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kitsync_harness::ControlPlane;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::time::{Duration, Instant};

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

#[tokio::test]
async fn version_is_the_built_release() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.expect("client");
    let version = client.apiserver_version().await.expect("/version");
    assert!(version.git_version.starts_with("v1.36."), "{version:?}");
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn namespaces_are_stored_and_deleted_by_the_controller_manager() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.expect("client");
    let name = plane.namespace("realness-ns").await.expect("namespace");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert_eq!(
        namespaces
            .get(&name)
            .await
            .expect("stored")
            .metadata
            .name
            .as_deref(),
        Some(name.as_str())
    );

    let config_maps: Api<ConfigMap> = Api::namespaced(client, &name);
    config_maps
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "inside"}})),
        )
        .await
        .expect("create configmap");
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    // Only the namespace controller empties and finalizes a namespace.
    eventually("namespace deletion", Duration::from_secs(60), || async {
        matches!(namespaces.get_opt(&name).await, Ok(None))
    })
    .await;
}

#[tokio::test]
async fn a_crd_becomes_established_and_serves_its_kind() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = from_json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.realness.kitsync.dev"},
        "spec": {
            "group": "realness.kitsync.dev",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    }));
    crds.patch(
        "widgets.realness.kitsync.dev",
        &PatchParams::apply("realness"),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    eventually("CRD Established", Duration::from_secs(30), || async {
        let Ok(crd) = crds.get("widgets.realness.kitsync.dev").await else {
            return false;
        };
        crd.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
    .await;

    let ns = plane.namespace("realness-crd").await.expect("namespace");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("realness.kitsync.dev", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource);
    let widget: DynamicObject = from_json(json!({
        "apiVersion": "realness.kitsync.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3}
    }));
    widgets
        .patch("w", &PatchParams::apply("realness"), &Patch::Apply(&widget))
        .await
        .expect("apply custom resource");
    let stored = widgets.get("w").await.expect("get");
    assert_eq!(stored.data["spec"]["size"], 3);
    // The schema is enforced: a string where an integer belongs is refused.
    let bad: DynamicObject = from_json(json!({
        "apiVersion": "realness.kitsync.dev/v1", "kind": "Widget",
        "metadata": {"name": "bad"}, "spec": {"size": "large"}
    }));
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("schema violation");
    assert_eq!(status_code(&err), Some(422), "{err}");
    // Server-side apply refuses it too, but with a 500 (the typed patch cannot be built):
    // an apply engine must not read that status as a transient server fault.
    let err = widgets
        .patch("bad", &PatchParams::apply("realness"), &Patch::Apply(&bad))
        .await
        .expect_err("schema violation");
    assert_eq!(status_code(&err), Some(500), "{err}");
    assert!(err.to_string().contains(".spec.size: expected numeric"), "{err}");
}

#[tokio::test]
async fn server_side_apply_reports_conflicts_between_field_managers() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("realness-ssa").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(plane.client().await.expect("client"), &ns);
    let with = |value: &str| -> ConfigMap {
        from_json(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"port": value}}),
        )
    };
    api.patch(
        "shared",
        &PatchParams::apply("first-manager"),
        &Patch::Apply(&with("6776")),
    )
    .await
    .expect("first apply");
    let err = api
        .patch(
            "shared",
            &PatchParams::apply("second-manager"),
            &Patch::Apply(&with("5445")),
        )
        .await
        .expect_err("conflict");
    assert_eq!(status_code(&err), Some(409), "{err}");
    assert!(
        err.to_string().contains("first-manager"),
        "the conflict names the owner: {err}"
    );
    // Forcing takes the field over.
    api.patch(
        "shared",
        &PatchParams::apply("second-manager").force(),
        &Patch::Apply(&with("5445")),
    )
    .await
    .expect("forced apply");
    let now = api.get("shared").await.expect("get");
    assert_eq!(
        now.data.unwrap_or_default().get("port").map(String::as_str),
        Some("5445")
    );
}

#[tokio::test]
async fn a_user_without_rights_is_refused() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("realness-rbac").await.expect("namespace");
    let alice: Api<Pod> = Api::namespaced(plane.user_client("alice").await.expect("client"), &ns);
    let err = alice.list(&Default::default()).await.expect_err("forbidden");
    assert_eq!(status_code(&err), Some(403), "{err}");
    assert!(
        err.to_string()
            .contains("User \"alice\" cannot list resource \"pods\""),
        "{err}"
    );
}

#[tokio::test]
async fn an_impersonated_service_account_is_bounded_by_its_role() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.expect("client");
    let allowed = plane.namespace("realness-sa").await.expect("namespace");
    let other = plane.namespace("realness-other").await.expect("namespace");
    let apply = |value: serde_json::Value| {
        let admin = admin.clone();
        let ns = allowed.clone();
        async move {
            let kind = value["kind"].as_str().expect("kind").to_owned();
            let name = value["metadata"]["name"].as_str().expect("name").to_owned();
            let (group, version) = match value["apiVersion"].as_str().expect("apiVersion").split_once('/') {
                Some((g, v)) => (g.to_owned(), v.to_owned()),
                None => (String::new(), "v1".to_owned()),
            };
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
            let api: Api<DynamicObject> = Api::namespaced_with(admin, &ns, &resource);
            let object: DynamicObject = from_json(value);
            api.patch(&name, &PatchParams::apply("realness"), &Patch::Apply(&object))
                .await
                .expect("apply RBAC object");
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}})).await;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]}))
    .await;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": allowed}]}))
    .await;

    let user = format!("system:serviceaccount:{allowed}:deployer");
    let sa = plane
        .impersonating_client(
            &user,
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{allowed}"),
            ],
        )
        .await
        .expect("impersonating client");
    let cm: ConfigMap = from_json(json!({"metadata": {"name": "made-by-sa"}}));
    Api::<ConfigMap>::namespaced(sa.clone(), &allowed)
        .create(&PostParams::default(), &cm)
        .await
        .expect("the role allows configmaps in its namespace");
    let err = Api::<ConfigMap>::namespaced(sa.clone(), &other)
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("not in another namespace");
    assert_eq!(status_code(&err), Some(403), "{err}");
    assert!(err.to_string().contains(&user), "names the identity: {err}");
    let err = Api::<Pod>::namespaced(sa, &allowed)
        .list(&Default::default())
        .await
        .expect_err("not other resources");
    assert_eq!(status_code(&err), Some(403), "{err}");
}

#[tokio::test]
async fn a_watch_sees_an_update() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let plane = ControlPlane::shared();
    let ns = plane.namespace("realness-watch").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(plane.client().await.expect("client"), &ns);
    api.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": "watched"}, "data": {"v": "1"}})),
    )
    .await
    .expect("create");
    let stream = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=watched"),
    )
    .applied_objects();
    let mut stream = Box::pin(stream);
    let first = stream.next().await.expect("initial object").expect("watch works");
    assert_eq!(
        first.data.unwrap_or_default().get("v").map(String::as_str),
        Some("1")
    );
    let patch = json!({"data": {"v": "2"}});
    api.patch("watched", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update");
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let object = stream.next().await.expect("watch event").expect("watch works");
            if object.data.unwrap_or_default().get("v").map(String::as_str) == Some("2") {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the watch did not see the update");
}

#[tokio::test]
async fn the_audit_log_records_writes() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("realness-audit").await.expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(plane.client().await.expect("client"), &ns);
    api.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": "audited"}})),
    )
    .await
    .expect("create");
    let needle = format!("/api/v1/namespaces/{ns}/configmaps");
    eventually("an audit event", Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(plane.audit_log_path()).unwrap_or_default();
        log.lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|event| {
                event["verb"] == "create"
                    && event["requestURI"]
                        .as_str()
                        .is_some_and(|uri| uri.starts_with(&needle))
                    && event["user"]["username"] == kitsync_harness::ADMIN
            })
        })
    })
    .await;
}
