//! Issue 11, part 4: the operator's manifests in `deploy/`, against the real control plane.
//! Every object is applied server-side with strict field validation and read back whole; the
//! binary then runs with the Deployment's arguments, its host config (only what must differ
//! on this machine rewritten) and the identity and RBAC of `deploy/`, and serves the example.
//! Names are suffixed per test (`kitsync-system` is used by other tests, and the RBAC
//! objects are cluster-scoped); nothing else is changed.

use super::free_port;
use kitsync_harness::ControlPlane;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn suffix(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{:05}", nanos % 100_000)
}

/// A string field, or a failed test naming it.
fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {value} is not a string"))
}

/// The YAML files of `dir` (not of its subdirectories, as `kubectl apply -f dir`).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
}

/// Every object of `deploy/*.yaml` and `deploy/examples/*.yaml`, Namespaces first, with
/// `kitsync-system`, the example's kit namespaces and the cluster-scoped names suffixed.
fn manifests(id: &str) -> Vec<Value> {
    let mut objects = Vec::new();
    let examples = yaml_files(&deploy_dir().join("examples"));
    for file in yaml_files(&deploy_dir()).into_iter().chain(examples) {
        let yaml = std::fs::read_to_string(&file).expect("read manifest");
        let yaml = yaml.replace("kitsync-system", &format!("kitsync-{id}"));
        let yaml = yaml.replace("manufracture", &format!("manufracture-{id}"));
        let yaml = yaml.replace("smithereens", &format!("smithereens-{id}"));
        let parsed = kitsync::manifest::parse(&file.display().to_string(), &yaml);
        for object in parsed.unwrap_or_else(|e| panic!("{e}")) {
            let mut value = object.value;
            if object.id.kind.starts_with("ClusterRole") {
                value["metadata"]["name"] = json!(format!("{}-{id}", object.id.name));
            }
            if object.id.kind == "ClusterRoleBinding" {
                value["roleRef"]["name"] =
                    json!(format!("{}-{id}", text(&value["roleRef"]["name"], "roleRef")));
            }
            objects.push(value);
        }
    }
    objects.sort_by_key(|o| o["kind"] != "Namespace");
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found = objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    found.unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"))
}

async fn api_for(client: &kube::Client, object: &Value) -> Api<DynamicObject> {
    let api_version = text(&object["apiVersion"], "apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = text(&object["kind"], "kind");
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the cluster does not serve {api_version} {kind}: {e}"));
    match (caps.scope, object["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => panic!("{kind} {} has no namespace", object["metadata"]["name"]),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    }
}

/// Applies every object server-side (strict: an unknown or duplicate field is an error, not
/// a warning) and returns what the server stored.
async fn apply_all(client: &kube::Client, objects: &[Value]) -> Vec<DynamicObject> {
    let params = PatchParams::apply("kitsync-deploy-test").validation_strict();
    let mut stored = Vec::new();
    for object in objects {
        let name = text(&object["metadata"]["name"], "name");
        let api = api_for(client, object).await;
        let applied = api.patch(name, &params, &Patch::Apply(object)).await;
        applied.unwrap_or_else(|e| panic!("{} {name} refused: {e}", object["kind"]));
        stored.push(api.get(name).await.expect("read back"));
    }
    stored
}

/// Whether `live` holds everything of `wanted` (the server adds defaults, never drops).
fn contains(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(l), Value::Object(w)) => {
            w.iter().all(|(k, v)| l.get(k).is_some_and(|l| contains(l, v)))
        }
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(l, w)| contains(l, w))
        }
        _ => live == wanted,
    }
}

/// Deletes the test's namespaces (host and kits) and cluster-scoped RBAC objects.
async fn clean_up(client: &kube::Client, objects: &[Value]) {
    let cleaned = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for object in objects.iter().filter(|o| cleaned.iter().any(|k| o["kind"] == *k)) {
        let name = text(&object["metadata"]["name"], "name");
        let deleted = api_for(client, object)
            .await
            .delete(name, &DeleteParams::background())
            .await;
        deleted.unwrap_or_else(|e| panic!("deleting {} {name}: {e}", object["kind"]));
    }
}

/// `deploy/` is accepted by a real API server as written: every field is known (strict
/// validation) and kept, the Pod template passes the namespace's `restricted` Pod Security
/// level, and `deploy/Kustomization` lists what `kubectl apply -f deploy/` applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_manifests_are_accepted_server_side() {
    let client = ControlPlane::shared().client().await.expect("client");
    let id = suffix("da");
    let objects = manifests(&id);
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    let wanted = "Namespace ServiceAccount Role RoleBinding ClusterRole ClusterRoleBinding ConfigMap Secret";
    for kind in wanted.split(' ').chain(["Deployment", "Service"]) {
        assert!(kinds.contains(&kind), "deploy/ has no {kind}: {kinds:?}");
    }
    let stored = apply_all(&client, &objects).await;
    for (wanted, live) in objects.iter().zip(&stored) {
        let live = serde_json::to_value(live).expect("json");
        let mut wanted = wanted.clone();
        // The server turns stringData into data; the rest must come back as sent.
        wanted.as_object_mut().and_then(|o| o.remove("stringData"));
        assert!(
            contains(&live, &wanted),
            "changed or dropped:\n{wanted:#}\nstored:\n{live:#}"
        );
    }

    // The Pod the Deployment would start meets the `restricted` level namespace.yaml
    // enforces; a container allowed to escalate privileges does not (the check is live).
    let host_namespace = format!("kitsync-{id}");
    let template = &find(&objects, "Deployment", "kitsync")["spec"]["template"]["spec"];
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": template,
        "metadata": {"name": "kitsync-pod-check", "namespace": host_namespace}});
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &host_namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let as_pod = |v: &Value| serde_json::from_value(v.clone()).expect("a Pod");
    let admitted = pods.create(&dry_run, &as_pod(&pod)).await;
    admitted.expect("the Pod template passes Pod Security `restricted`");
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    let refused = pods
        .create(&dry_run, &as_pod(&pod))
        .await
        .expect_err("escalation refused");
    assert!(refused.to_string().contains("PodSecurity"), "{refused}");

    let kustomization = std::fs::read_to_string(deploy_dir().join("Kustomization")).expect("read");
    let listed = kustomization
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    let files = yaml_files(&deploy_dir());
    assert_eq!(
        listed,
        files.len(),
        "Kustomization lists deploy/*.yaml:\n{kustomization}"
    );
    for file in files.iter().filter_map(|f| f.file_name()) {
        let name = file.to_string_lossy();
        assert!(
            kustomization.contains(&format!("- {name}\n")),
            "Kustomization misses {name}"
        );
    }
    clean_up(&client, &objects).await;
}

/// The mount holding `path`, its volume, and the volume's key (file name) that is `path`.
fn mounted<'a>(pod: &'a Value, path: &str) -> (&'a Value, &'a Value, String) {
    let mounts = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("volumeMounts");
    let under = |dir: &str| path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
    let mount = mounts.iter().find(|m| m["mountPath"].as_str().is_some_and(under));
    let mount = mount.unwrap_or_else(|| panic!("the Deployment mounts nothing at {path}"));
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = volumes
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    let dir = text(&mount["mountPath"], "mountPath");
    let key = mount["subPath"]
        .as_str()
        .unwrap_or(path[dir.len()..].trim_start_matches('/'));
    (mount, volume, key.to_owned())
}

fn port_of(address: &Value) -> u64 {
    let port = text(address, "listen address")
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok());
    port.unwrap_or_else(|| panic!("{address} is not host:port"))
}

/// One HTTP/1.1 request on loopback; the status code, 0 when nothing answers.
fn http(port: u16, method: &str, path: &str, body: &str) -> u16 {
    let json = [("Content-Type", "application/json".to_owned())];
    super::http_request(port, method, path, &json, body.as_bytes()).0
}

/// examples/ as a Git repository at `dir`, kit namespaces suffixed as [`manifests`] does;
/// returns the commit.
fn example_repo(id: &str, dir: &Path) -> String {
    super::copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        dir,
    );
    for kit in ["manufracture", "smithereens"] {
        let file = dir.join(format!("kits/{kit}/kit.yaml"));
        let yaml = std::fs::read_to_string(&file).expect("kit.yaml");
        let yaml = yaml.replace(&format!("namespace: {kit}"), &format!("namespace: {kit}-{id}"));
        std::fs::write(&file, yaml).expect("write kit.yaml");
    }
    for args in [&["init", "-q"][..], &["add", "-A"], &["commit", "-q", "-m", "v5"]] {
        super::git(dir, args);
    }
    super::git(dir, &["rev-parse", "HEAD"])
}

/// A kubeconfig at `path` holding a fresh token of the ServiceAccount `namespace/account`:
/// the identity and rights the Deployment's Pod has, and no other.
async fn kubeconfig_of(client: &kube::Client, namespace: &str, account: &str, path: &Path) {
    let plane = ControlPlane::shared();
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let request = serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).expect("request");
    let answer = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await;
    let token = answer
        .expect("a token")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let admin = std::fs::read_to_string(plane.kubeconfig_path()).expect("kubeconfig");
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "));
    let cluster = format!(
        "{{server: \"{}\", certificate-authority-data: {}}}",
        plane.server_url(),
        ca.expect("CA")
    );
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {cluster}}}]\nusers: [{{name: u, user: {{token: {token}}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
    );
    std::fs::write(path, yaml).expect("write kubeconfig");
}

/// Waits (90 s at most) until `probe` finds something, failing early with the log when the
/// process has exited.
async fn wait_for<T>(
    child: &mut Child,
    log: &Path,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("serve exited ({status}) before {what}:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 90 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The binary, started as the Deployment starts it (its args and env, the ConfigMap's host
/// config with only the source URL, listen addresses, cache and secret paths made local),
/// authenticated as the ServiceAccount `deploy/` binds (a real token, no admin rights), serves
/// the example: ready, both kits applied through their own accounts, Events written, the
/// webhook secret loaded; SIGTERM exits 0 within the host config's grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_with_the_deployments_arguments_and_rbac() {
    let client = ControlPlane::shared().client().await.expect("client");
    let id = suffix("db");
    let host_namespace = format!("kitsync-{id}");
    let objects = manifests(&id);
    apply_all(&client, &objects).await;

    let pod = &find(&objects, "Deployment", "kitsync")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let entrypoint = dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/kitsync\"]");
    assert!(
        entrypoint && container.get("command").is_none(),
        "the image's entrypoint runs kitsync"
    );
    let args = container["args"].as_array().expect("args").iter();
    let mut args: Vec<String> = args.map(|a| text(a, "arg").to_owned()).collect();
    let at = 1 + args
        .iter()
        .position(|a| a == "--config")
        .expect("--config in args");
    let (_, volume, key) = mounted(pod, &args[at]);
    let config_map = find(
        &objects,
        "ConfigMap",
        text(&volume["configMap"]["name"], "ConfigMap volume"),
    );
    let mut host: Value = serde_saphyr::from_str(text(&config_map["data"][&key], &key)).expect("host.yaml");
    assert_eq!(host["hostNamespace"], json!(host_namespace));

    // What the binary is given below in place of the cluster's paths and ports is where the
    // Deployment puts them: Secret keys on read-only mounts, the cache on an emptyDir, the
    // listen ports on the container ports its probes and the Service use.
    for pointer in [
        "/sources/0/credentials/tokenFile",
        "/sources/0/webhook/secretFile",
    ] {
        let (mount, volume, key) = mounted(pod, text(host.pointer(pointer).unwrap_or(&Value::Null), pointer));
        let secret = find(
            &objects,
            "Secret",
            text(&volume["secret"]["secretName"], "Secret volume"),
        );
        assert!(
            mount["readOnly"] == true && secret["stringData"].get(&key).is_some(),
            "{pointer}"
        );
    }
    let cache = mounted(pod, text(&host["cacheDir"], "cacheDir")).1;
    assert!(cache.get("emptyDir").is_some(), "cacheDir is on an emptyDir");
    let port_named = |name: &Value| {
        let ports = container["ports"].as_array().expect("ports");
        let port = ports
            .iter()
            .find(|p| &p["name"] == name || &p["containerPort"] == name);
        port.and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(
            port_named(&container[probe]["httpGet"]["port"]),
            port_of(&host["listen"]["probes"])
        );
    }
    assert_eq!(
        port_named(&json!("webhooks")),
        port_of(&host["listen"]["webhooks"])
    );
    for port in find(&objects, "Service", "kitsync")["spec"]["ports"]
        .as_array()
        .expect("ports")
    {
        port_named(&port["targetPort"]);
    }
    let grace = text(&host["shutdownGracePeriod"], "shutdownGracePeriod").strip_suffix('s');
    let grace: u64 = grace
        .and_then(|s| s.parse().ok())
        .expect("shutdownGracePeriod in seconds");
    assert!(pod["terminationGracePeriodSeconds"].as_u64().expect("grace") > grace);

    let dir = tempfile::tempdir().expect("tempdir");
    let commit = example_repo(&id, &dir.path().join("repo"));
    let (probes, hooks) = (free_port(), free_port());
    let (token_file, secret_file) = (dir.path().join("git-token"), dir.path().join("webhook-secret"));
    std::fs::write(&token_file, "not-a-real-token\n").expect("token");
    std::fs::write(&secret_file, "whsec-deploy-test\n").expect("secret");
    host["sources"][0]["url"] = json!(format!("file://{}", dir.path().join("repo").display()));
    host["sources"][0]["credentials"]["tokenFile"] = json!(token_file);
    host["sources"][0]["webhook"]["secretFile"] = json!(secret_file);
    host["listen"] =
        json!({"probes": format!("127.0.0.1:{probes}"), "webhooks": format!("127.0.0.1:{hooks}")});
    host["cacheDir"] = json!(dir.path().join("cache"));
    let config = dir.path().join("host.yaml");
    std::fs::write(&config, serde_json::to_string_pretty(&host).expect("json")).expect("host config");
    args[at] = config.display().to_string();

    let kubeconfig = dir.path().join("kubeconfig");
    let account = text(&pod["serviceAccountName"], "serviceAccountName");
    kubeconfig_of(&client, &host_namespace, account, &kubeconfig).await;
    let log = dir.path().join("serve.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kitsync"));
    for var in container["env"].as_array().into_iter().flatten() {
        // A fieldRef (the Pod's name) has no Pod here.
        command.env(
            text(&var["name"], "env"),
            var["value"].as_str().unwrap_or("kitsync-deploy-test"),
        );
    }
    let mut child = command
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KITSYNC_LOG")
        .env_remove("KITSYNC_LOG_FORMAT")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("kitsync serve starts");

    wait_for(&mut child, &log, "/readyz answering 200", async || {
        (http(probes, "GET", "/readyz", "") == 200).then_some(())
    })
    .await;
    wait_for(
        &mut child,
        &log,
        &format!("both kits Ready at {commit}"),
        async || {
            let kits = kitsync::status::list(&client, &host_namespace).await.ok()?;
            let ready = kits
                .iter()
                .filter(|k| k.status.is_ready() && k.status.last_applied_revision == commit);
            (ready.count() == 2).then_some(())
        },
    )
    .await;
    for kit in ["manufracture", "smithereens"] {
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), &format!("{kit}-{id}"));
        services.get("vision").await.expect("the kit's Service applied");
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &host_namespace);
    wait_for(&mut child, &log, "an Applied Event on a Kit", async || {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Applied"))
    })
    .await;
    let hook = format!("/hooks/{}", text(&host["sources"][0]["name"], "source name"));
    assert_eq!(
        http(hooks, "POST", &hook, "{}"),
        401,
        "an unsigned call is refused"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(killed.expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(grace);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within {grace} s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "--log-format json: JSON lines:\n{log}"
    );
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "a right deploy/ does not grant:\n{log}"
    );
    clean_up(&client, &objects).await;
}
