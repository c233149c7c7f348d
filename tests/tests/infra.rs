//! The Terraform (infra/terraform) against the code: fails when they disagree.
//!
//! Reads the HCL with `hcl-rs` (no provider, no plan: nothing here needs AWS) and the code's
//! own facts from the source tree and from golos-control's constants:
//! - every Lambda binary of `functions/*` has a function, with a policy and a log group;
//! - every function and the media worker get the `GOLOS_*` variables golos needs in AWS mode,
//!   and every `GOLOS_*` name the Terraform sets is one the settings loader reads;
//! - every AWS API the adapters (shared/adapters-aws) call at run time is allowed to the
//!   roles that run the whole platform (the API, the media worker), and each other function
//!   is allowed the documented subset it needs ([`NEEDS`]);
//! - every queue the code uses exists, has a dead-letter queue (redrive policy) and a
//!   consumer, and every secret the code reads has a container.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression, ObjectKey};

type Names = BTreeSet<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn terraform(dir: &str) -> PathBuf {
    workspace().join("infra/terraform").join(dir)
}

/// Every top-level block of every `.tf` file in `dir` (one module).
fn module(dir: &str) -> Vec<Block> {
    let dir = terraform(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf files in {}", dir.display());
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let body: Body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            body.into_blocks().collect::<Vec<_>>()
        })
        .collect()
}

fn labels(block: &Block) -> Vec<&str> {
    block.labels.iter().map(hcl::BlockLabel::as_str).collect()
}

/// The block `kind "labels[0]" "labels[1]"`, e.g. `resource "aws_lambda_function" "golos"`.
fn block<'a>(blocks: &'a [Block], kind: &str, wanted: &[&str]) -> &'a Block {
    blocks
        .iter()
        .find(|b| b.identifier.as_str() == kind && labels(b) == wanted)
        .unwrap_or_else(|| panic!("no {kind} {wanted:?} in the Terraform"))
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key.as_str() == key).map(|a| &a.expr)
}

fn local<'a>(blocks: &'a [Block], name: &str) -> &'a Expression {
    blocks
        .iter()
        .filter(|b| b.identifier.as_str() == "locals")
        .find_map(|b| attr(&b.body, name))
        .unwrap_or_else(|| panic!("no local.{name}"))
}

fn text(expr: &Expression) -> String {
    hcl::format::to_string(expr).unwrap()
}

fn key_name(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(id) => id.as_str().to_owned(),
        ObjectKey::Expression(Expression::String(s)) => s.clone(),
        ObjectKey::Expression(other) => text(other),
        other => panic!("an object key hcl-rs added: {other:?}"),
    }
}

fn object<'a>(expr: &'a Expression, what: &str) -> &'a hcl::Object<ObjectKey, Expression> {
    match expr {
        Expression::Object(object) => object,
        other => panic!("{what} is not an object literal: {}", text(other)),
    }
}

/// The keys an object expression is sure to have: an object literal's, the union over
/// `merge(...)`'s arguments, the intersection of a conditional's branches; a reference is
/// asked of `resolve` (`var.golos_environment`, `each.value.environment`).
fn sure_keys(expr: &Expression, resolve: &dyn Fn(&str) -> Option<Names>) -> Names {
    match expr {
        Expression::Object(object) => object.keys().map(key_name).collect(),
        Expression::Parenthesis(inner) => sure_keys(inner, resolve),
        Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
            call.args.iter().flat_map(|arg| sure_keys(arg, resolve)).collect()
        }
        Expression::Conditional(c) => {
            let (yes, no) = (sure_keys(&c.true_expr, resolve), sure_keys(&c.false_expr, resolve));
            yes.intersection(&no).cloned().collect()
        }
        other => resolve(&text(other)).unwrap_or_else(|| panic!("cannot tell the keys of {}", text(other))),
    }
}

/// Every key an object expression may have (conditional ones too).
fn any_keys(expr: &Expression, resolve: &dyn Fn(&str) -> Option<Names>) -> Names {
    match expr {
        Expression::Object(object) => object.keys().map(key_name).collect(),
        Expression::Parenthesis(inner) => any_keys(inner, resolve),
        Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
            call.args.iter().flat_map(|arg| any_keys(arg, resolve)).collect()
        }
        Expression::Conditional(c) => {
            let mut keys = any_keys(&c.true_expr, resolve);
            keys.extend(any_keys(&c.false_expr, resolve));
            keys
        }
        other => resolve(&text(other)).unwrap_or_else(|| panic!("cannot tell the keys of {}", text(other))),
    }
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .map(|item| match item {
                Expression::String(s) => s.clone(),
                other => panic!("expected a string literal, found {}", text(other)),
            })
            .collect(),
        Expression::FuncCall(call) if call.name.name.as_str() == "toset" => strings(&call.args[0]),
        other => panic!("expected a list of string literals, found {}", text(other)),
    }
}

/// The actions an `aws_iam_policy_document` allows, with those of the documents it names in
/// `source_policy_documents`.
fn allowed_actions(blocks: &[Block], document: &str) -> Names {
    let doc = block(blocks, "data", &["aws_iam_policy_document", document]);
    let mut actions = Names::new();
    for statement in doc.body.blocks().filter(|b| b.identifier.as_str() == "statement") {
        let effect = attr(&statement.body, "effect").map(text);
        if effect.as_deref().is_some_and(|e| e.contains("Deny")) {
            continue;
        }
        if let Some(list) = attr(&statement.body, "actions") {
            actions.extend(strings(list));
        }
    }
    if let Some(sources) = attr(&doc.body, "source_policy_documents") {
        for source in text(sources).split("data.aws_iam_policy_document.").skip(1) {
            let name = source.split(".json").next().unwrap();
            actions.extend(allowed_actions(blocks, name));
        }
    }
    actions
}

// --- What the code says ---

/// The binaries of `functions/*` (each crate's `[[bin]]` name).
fn lambda_binaries() -> Names {
    let mut binaries = Names::new();
    for entry in std::fs::read_dir(workspace().join("functions")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(value) = line.strip_prefix("name").map(str::trim).and_then(|l| l.strip_prefix('=')) {
                    binaries.insert(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    binaries
}

/// Every `GOLOS_*` variable the settings loader reads (functions/bootstrap/src/settings.rs).
fn settings_variables() -> Names {
    let source = std::fs::read_to_string(workspace().join("functions/bootstrap/src/settings.rs")).unwrap();
    let names: Names = source
        .split('"')
        .filter(|piece| {
            piece.starts_with("GOLOS_")
                && piece.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect();
    assert!(names.contains("GOLOS_TABLE") && names.len() > 30, "settings.rs changed shape: {names:?}");
    names
}

/// What every binary needs in AWS mode: where the table, queues, secrets and key are, and
/// the region (a Lambda has AWS_REGION from the runtime, an ECS task on EC2 does not; golos
/// takes GOLOS_AWS_REGION first, so both get it).
const AWS_MODE: [&str; 5] =
    ["GOLOS_AWS_REGION", "GOLOS_TABLE", "GOLOS_QUEUE_PREFIX", "GOLOS_SECRETS_PREFIX", "GOLOS_KMS_KEY_ID"];

/// What a media worker needs besides: the backend (`golos serve` defaults to local), its
/// listeners, SIP and RTP, the drain, the client address from the ALB, and the settings file
/// the instance writes its public address into.
const WORKER: [&str; 9] = [
    "GOLOS_BACKEND",
    "GOLOS_CONFIG",
    "GOLOS_LISTEN",
    "GOLOS_OPS_LISTEN",
    "GOLOS_SIP_LISTEN",
    "GOLOS_RTP_PORTS",
    "GOLOS_DRAIN_SECS",
    "GOLOS_TRUST_FORWARDED_FOR",
    "GOLOS_LOG_FORMAT",
];

/// The SDK operations of shared/adapters-aws, by the client they are called on.
fn adapter_operations() -> Names {
    let mut operations = Names::new();
    for entry in std::fs::read_dir(workspace().join("shared/adapters-aws/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let code: String = std::fs::read_to_string(&path).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
        for receiver in ["client.", "sqs.", "kms.", "secrets."] {
            for after in code.split(receiver).skip(1) {
                let op: String = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !op.is_empty() && op != "clone" && after[op.len()..].starts_with("()") {
                    operations.insert(op);
                }
            }
        }
    }
    assert!(operations.contains("put_item") && operations.contains("send_message"), "found {operations:?}");
    operations
}

/// Operations only the set-up commands call (`golos init-secrets`, the embedded/moto
/// provisioning): in AWS, Terraform creates the table, queues, key and secret containers,
/// and the operator runs `golos init-secrets --backend aws` with their own credentials.
const PROVISIONING: [&str; 6] =
    ["create_table", "update_time_to_live", "create_queue", "create_key", "create_secret", "put_secret_value"];

/// Operations only an operator's restore calls (shared/adapters-aws/src/recovery.rs, run by
/// the disaster-recovery drill and docs/disaster-recovery.md with the operator's own
/// credentials): no runtime role may back up, restore or reconfigure the table.
const RECOVERY: [&str; 5] = [
    "update_continuous_backups",
    "create_backup",
    "restore_table_from_backup",
    "restore_table_to_point_in_time",
    "update_time_to_live",
];

/// The IAM actions an SDK operation needs. Batch operations are authorised by their single
/// action; TransactWriteItems by each item's action.
fn iam_actions(operation: &str) -> &'static [&'static str] {
    match operation {
        "get_item" => &["dynamodb:GetItem"],
        "put_item" => &["dynamodb:PutItem"],
        "update_item" => &["dynamodb:UpdateItem"],
        "delete_item" => &["dynamodb:DeleteItem"],
        "query" => &["dynamodb:Query"],
        "batch_write_item" => &["dynamodb:BatchWriteItem"],
        "transact_write_items" => {
            &["dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
        }
        "describe_table" => &["dynamodb:DescribeTable"],
        "send_message" => &["sqs:SendMessage"],
        "receive_message" => &["sqs:ReceiveMessage"],
        "delete_message" => &["sqs:DeleteMessage"],
        "change_message_visibility" | "change_message_visibility_batch" => &["sqs:ChangeMessageVisibility"],
        "get_queue_url" => &["sqs:GetQueueUrl"],
        "get_queue_attributes" => &["sqs:GetQueueAttributes"],
        "generate_data_key" => &["kms:GenerateDataKey"],
        "decrypt" => &["kms:Decrypt"],
        "get_secret_value" => &["secretsmanager:GetSecretValue"],
        other => panic!(
            "shared/adapters-aws calls `{other}`: add its IAM action(s) to iam_actions in tests/tests/infra.rs \
             (or to PROVISIONING or RECOVERY if only set-up or an operator's restore calls it), then allow it in infra/terraform"
        ),
    }
}

/// Every action the adapters need at run time.
fn runtime_actions() -> Names {
    adapter_operations()
        .iter()
        .filter(|op| !PROVISIONING.contains(&op.as_str()) && !RECOVERY.contains(&op.as_str()))
        .flat_map(|op| iam_actions(op).iter().map(|a| (*a).to_owned()))
        .collect()
}

const TABLE_ALL: [&str; 8] = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
];
const ENVELOPE: [&str; 2] = ["kms:GenerateDataKey", "kms:Decrypt"];
const STARTUP: [&str; 3] = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "secretsmanager:GetSecretValue"];
const CONSUMER: [&str; 3] = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"];

/// What each function needs, where it is less than everything (`None`: every run-time
/// action of the adapters, as the API and the media worker run every use-case).
/// - payments: credits (transactions), idempotency records, the webhooks it queues;
/// - call-events: debits, usage, leases, records; consumes its queue, queues webhooks;
/// - webhooks: endpoints, call records, delivery records in batches; consumes, re-queues,
///   dead-letters; no transactions, no deletes;
/// - sweeper: expired leases (transactions), the debits of lost workers' calls; queues;
/// - reconciliation: reads only.
#[allow(clippy::type_complexity)]
const NEEDS: [(&str, Option<&[&[&str]]>); 6] = [
    ("api", None),
    ("payments", Some(&[&TABLE_ALL, &ENVELOPE, &STARTUP, &["sqs:SendMessage"]])),
    ("call-events", Some(&[&TABLE_ALL, &ENVELOPE, &STARTUP, &CONSUMER, &["sqs:SendMessage"]])),
    (
        "webhooks",
        Some(&[
            &[
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            ],
            &ENVELOPE,
            &STARTUP,
            &CONSUMER,
            &["sqs:SendMessage"],
        ]),
    ),
    (
        "sweeper",
        Some(&[
            &[
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:ConditionCheckItem",
            ],
            &ENVELOPE,
            &STARTUP,
            &["sqs:SendMessage"],
        ]),
    ),
    ("reconciliation", Some(&[&["dynamodb:GetItem", "dynamodb:Query"], &STARTUP])),
];

fn missing(needed: &Names, allowed: &Names) -> Vec<String> {
    needed.difference(allowed).cloned().collect()
}

// --- The checks ---

/// local.functions of modules/functions, by function key.
fn functions(blocks: &[Block]) -> BTreeMap<String, &hcl::Object<ObjectKey, Expression>> {
    object(local(blocks, "functions"), "local.functions")
        .iter()
        .map(|(key, value)| (key_name(key), object(value, "a function")))
        .collect()
}

fn field<'a>(function: &'a hcl::Object<ObjectKey, Expression>, name: &str) -> &'a Expression {
    function
        .iter()
        .find_map(|(key, value)| (key_name(key) == name).then_some(value))
        .unwrap_or_else(|| panic!("a function without `{name}`"))
}

/// local.golos_environment of the root: (sure, possible) keys.
fn root_environment() -> (Names, Names) {
    let root = module(".");
    let env = local(&root, "golos_environment");
    let none = |_: &str| None;
    for name in ["functions", "media_pool"] {
        let call = block(&root, "module", &[name]);
        let passed = attr(&call.body, "golos_environment").map(text);
        assert_eq!(
            passed.as_deref(),
            Some("local.golos_environment"),
            "module {name} must get golos_environment = local.golos_environment"
        );
    }
    (sure_keys(env, &none), any_keys(env, &none))
}

#[test]
fn every_lambda_binary_has_a_function_with_a_role_policy_and_log_group() {
    let blocks = module("modules/functions");
    let functions = functions(&blocks);
    let deployed: Names = functions
        .values()
        .map(|f| match field(f, "binary") {
            Expression::String(s) => s.clone(),
            other => panic!("binary is not a literal: {}", text(other)),
        })
        .collect();
    let binaries = lambda_binaries();
    assert_eq!(binaries.len(), 6, "functions/* binaries: {binaries:?}");
    assert_eq!(
        deployed, binaries,
        "modules/functions local.functions deploys {deployed:?}, the workspace builds {binaries:?}"
    );
    for resource in [
        ("aws_lambda_function", "golos"),
        ("aws_iam_role", "function"),
        ("aws_iam_role_policy", "function"),
        ("aws_cloudwatch_log_group", "function"),
    ] {
        let b = block(&blocks, "resource", &[resource.0, resource.1]);
        assert_eq!(
            attr(&b.body, "for_each").map(text).as_deref(),
            Some("local.functions"),
            "{} {} must exist for every function",
            resource.0,
            resource.1
        );
    }
    // Each function's policy is the document named after it.
    let policies = object(local(&blocks, "policies"), "local.policies");
    let policy_keys: Names = policies.keys().map(key_name).collect();
    assert_eq!(policy_keys, functions.keys().cloned().collect::<Names>(), "local.policies");
    for (key, value) in policies {
        let document = key_name(key).replace('-', "_");
        assert_eq!(text(value), format!("data.aws_iam_policy_document.{document}.json"), "policy of {}", key_name(key));
    }
    // payments and call-events have reserved concurrency so API floods cannot starve money.
    let reserved = block(&blocks, "variable", &["reserved_concurrency"]);
    let defaults = object(attr(&reserved.body, "default").unwrap(), "reserved_concurrency");
    let reserved: Names = defaults.keys().map(key_name).collect();
    assert!(reserved.contains("payments") && reserved.contains("call-events"));
    let lambda = block(&blocks, "resource", &["aws_lambda_function", "golos"]);
    assert_eq!(
        attr(&lambda.body, "reserved_concurrent_executions").map(text).as_deref(),
        Some("var.reserved_concurrency[each.key]")
    );
}

#[test]
fn every_function_and_the_worker_get_the_variables_golos_reads_in_aws_mode() {
    let known = settings_variables();
    let (root_sure, root_any) = root_environment();
    let required: Names = AWS_MODE.iter().map(|s| (*s).to_owned()).collect();
    assert!(required.is_subset(&root_sure), "golos_environment lacks {:?}", missing(&required, &root_sure));

    // The functions: var.golos_environment, then each function's own.
    let blocks = module("modules/functions");
    let lambda = block(&blocks, "resource", &["aws_lambda_function", "golos"]);
    let environment = lambda.body.blocks().find(|b| b.identifier.as_str() == "environment").expect("environment");
    let variables = attr(&environment.body, "variables").expect("environment.variables");
    for (name, function) in functions(&blocks) {
        let own = field(function, "environment");
        let sure = sure_keys(variables, &|r: &str| match r {
            "var.golos_environment" => Some(root_sure.clone()),
            "each.value.environment" => Some(sure_keys(own, &|_: &str| None)),
            _ => None,
        });
        let any = any_keys(variables, &|r: &str| match r {
            "var.golos_environment" => Some(root_any.clone()),
            "each.value.environment" => Some(any_keys(own, &|_: &str| None)),
            _ => None,
        });
        assert!(required.is_subset(&sure), "function {name} lacks {:?}", missing(&required, &sure));
        let unknown = missing(&any, &known);
        assert!(unknown.is_empty(), "function {name} sets {unknown:?}, which golos does not read");
    }

    // The media worker: var.golos_environment and the worker's own.
    let blocks = module("modules/media_pool");
    let worker = local(&blocks, "worker_environment");
    let sure = sure_keys(worker, &|r: &str| (r == "var.golos_environment").then(|| root_sure.clone()));
    let any = any_keys(worker, &|r: &str| (r == "var.golos_environment").then(|| root_any.clone()));
    let required: Names = AWS_MODE.iter().chain(WORKER.iter()).map(|s| (*s).to_owned()).collect();
    assert!(required.is_subset(&sure), "the media worker lacks {:?}", missing(&required, &sure));
    let unknown = missing(&any, &known);
    assert!(unknown.is_empty(), "the media worker gets {unknown:?}, which golos does not read");
    let task = text(
        attr(&block(&blocks, "resource", &["aws_ecs_task_definition", "worker"]).body, "container_definitions")
            .unwrap(),
    );
    assert!(task.contains("local.worker_environment"), "the worker container must get local.worker_environment");
    // A worker listening on 0.0.0.0 needs its public address (settings.rs refuses to start
    // without it): the instance writes it into the GOLOS_CONFIG file the task mounts.
    let Expression::FuncCall(merge) = worker else {
        panic!("worker_environment: merge(var.golos_environment, {{...}})")
    };
    let config_path = merge
        .args
        .iter()
        .filter_map(|arg| if let Expression::Object(o) = arg { Some(o) } else { None })
        .flat_map(|o| o.iter())
        .find_map(|(k, v)| match v {
            Expression::String(path) if key_name(k) == "GOLOS_CONFIG" => Some(path.clone()),
            _ => None,
        })
        .expect("GOLOS_CONFIG: a literal path in worker_environment");
    let launch = text(attr(&block(&blocks, "resource", &["aws_launch_template", "worker"]).body, "user_data").unwrap());
    assert!(
        launch.contains(&config_path) && launch.contains("[sip]") && launch.contains("public_address"),
        "the worker instances must write sip.public_address into {config_path}"
    );
    // The drain: no stopTimeout (Fargate's 120 s cap does not apply on EC2; the agent's
    // ECS_CONTAINER_STOP_TIMEOUT covers GOLOS_DRAIN_SECS).
    assert!(launch.contains("ECS_CONTAINER_STOP_TIMEOUT"), "the instances must set ECS_CONTAINER_STOP_TIMEOUT");
    assert!(!task.contains("stopTimeout"), "stopTimeout would cut the 10-minute drain (the agent's setting applies)");
}

#[test]
fn every_aws_api_the_adapters_call_is_allowed() {
    let runtime = runtime_actions();
    let called = adapter_operations();
    for (list, ops) in [("PROVISIONING", &PROVISIONING[..]), ("RECOVERY", &RECOVERY[..])] {
        for op in ops {
            assert!(called.contains(*op), "{list} names `{op}`, which the adapters no longer call");
        }
    }
    let blocks = module("modules/functions");
    for (function, needs) in NEEDS {
        let needed: Names = match needs {
            None => runtime.clone(),
            Some(groups) => groups.iter().flat_map(|g| g.iter().map(|a| (*a).to_owned())).collect(),
        };
        let stale = missing(&needed, &runtime);
        assert!(stale.is_empty(), "NEEDS of {function} lists {stale:?}, which the adapters never call");
        let allowed = allowed_actions(&blocks, &function.replace('-', "_"));
        let lacking = missing(&needed, &allowed);
        assert!(lacking.is_empty(), "function {function}'s policy does not allow {lacking:?}");
        assert_no_operator_only_actions(&format!("function {function}"), &allowed);
    }
    let functions = functions(&blocks);
    let covered: Names = NEEDS.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(covered, functions.keys().cloned().collect::<Names>(), "NEEDS must name every function");

    let blocks = module("modules/media_pool");
    let allowed = allowed_actions(&blocks, "task");
    let lacking = missing(&runtime, &allowed);
    assert!(lacking.is_empty(), "the media worker's task role does not allow {lacking:?}");
    for action in ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"] {
        assert!(allowed.contains(action), "the worker sets its own scale-in protection: {action}");
    }
    assert_no_operator_only_actions("the media worker", &allowed);
}

/// What only the operator does, with their own credentials (docs/security.md): the table's
/// backups, restores, settings and deletion, and the keys' and secrets' lifecycle. A
/// compromised function or worker must not be able to roll the money back or destroy it.
fn assert_no_operator_only_actions(who: &str, allowed: &Names) {
    let operator_only = |action: &str| {
        action.ends_with(":*")
            || action == "*"
            || [
                "dynamodb:CreateBackup",
                "dynamodb:DeleteBackup",
                "dynamodb:RestoreTableFromBackup",
                "dynamodb:RestoreTableToPointInTime",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:UpdateTimeToLive",
                "dynamodb:UpdateTable",
                "dynamodb:DeleteTable",
                "kms:ScheduleKeyDeletion",
                "kms:DisableKey",
                "kms:PutKeyPolicy",
                "secretsmanager:DeleteSecret",
                "secretsmanager:PutSecretValue",
            ]
            .contains(&action)
    };
    let found: Vec<&String> = allowed.iter().filter(|a| operator_only(a)).collect();
    assert!(found.is_empty(), "{who} may {found:?}, which only the operator may");
}

#[test]
fn every_queue_exists_with_a_dead_letter_queue_and_a_consumer_and_every_secret_has_a_container() {
    use golos_control::state::{EventQueues, CALL_TOKEN_KEY_SECRET, OPERATOR_KEY_SECRET, PEPPER_SECRET};
    let data = module("modules/data");
    let queues: Names = object(local(&data, "queues"), "local.queues").keys().map(key_name).collect();
    let used: Names = [EventQueues::CALL_EVENTS, EventQueues::WEBHOOKS].iter().map(|q| (*q).to_owned()).collect();
    assert_eq!(queues, used, "modules/data local.queues against the queues golos uses");

    let main = block(&data, "resource", &["aws_sqs_queue", "main"]);
    let dlq = block(&data, "resource", &["aws_sqs_queue", "dead_letter"]);
    for q in [main, dlq] {
        assert_eq!(attr(&q.body, "for_each").map(text).as_deref(), Some("local.queues"));
    }
    let redrive = text(attr(&main.body, "redrive_policy").expect("every queue needs a redrive policy"));
    assert!(
        redrive.contains("deadLetterTargetArn") && redrive.contains("aws_sqs_queue.dead_letter[each.key].arn"),
        "each queue's redrive policy must name its own dead-letter queue: {redrive}"
    );

    let blocks = module("modules/functions");
    let functions = functions(&blocks);
    let consumers = object(local(&blocks, "consumers"), "local.consumers");
    let consumed: Names = consumers
        .iter()
        .map(|(function, queue)| {
            assert!(functions.contains_key(&key_name(function)), "consumer {} is no function", key_name(function));
            match queue {
                Expression::String(q) => q.clone(),
                other => panic!("a consumer's queue is not a literal: {}", text(other)),
            }
        })
        .collect();
    assert_eq!(consumed, queues, "every queue needs exactly one consumer");
    let mapping = block(&blocks, "resource", &["aws_lambda_event_source_mapping", "consumer"]);
    assert_eq!(attr(&mapping.body, "for_each").map(text).as_deref(), Some("local.consumers"));
    assert_eq!(
        attr(&mapping.body, "function_name").map(text).as_deref(),
        Some("aws_lambda_alias.live[each.key].arn"),
        "consumers invoke the live alias, which canary deployments move"
    );
    let types = attr(&mapping.body, "function_response_types").map(strings).unwrap_or_default();
    assert_eq!(types, ["ReportBatchItemFailures"], "consumers report partial batch failures");

    let mut secrets = Names::new();
    for name in ["generated", "operator"] {
        let b = block(&data, "resource", &["aws_secretsmanager_secret", name]);
        secrets.extend(strings(attr(&b.body, "for_each").unwrap()));
    }
    for read in [
        PEPPER_SECRET,
        OPERATOR_KEY_SECRET,
        CALL_TOKEN_KEY_SECRET,
        golos_control::tool_signing::TOOL_SIGNING_SECRET,
        golos_control::payments::SECRET_NAME,
    ] {
        assert!(secrets.contains(read), "golos reads the secret `{read}`; modules/data creates {secrets:?}");
    }
}

/// The `SIP_FRONT_*` names in `text`.
fn sip_front_names(text: &str) -> Names {
    text.match_indices("SIP_FRONT_")
        .map(|(at, _)| text[at..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect())
        .collect()
}

/// The SIP front's container (modules/sip_front) against the entrypoint its image runs
/// (infra/sip-front/run) and the image itself (infra/sip-front/Dockerfile): every variable
/// `run` requires is set, the workers are found by the SRV name, nothing is set that `run`
/// does not read, and the configuration goes where the image lets Kamailio's user write.
#[test]
fn the_sip_front_task_sets_what_its_entrypoint_requires_and_writes_where_the_image_allows() {
    let run = std::fs::read_to_string(workspace().join("infra/sip-front/run")).unwrap();
    let read = sip_front_names(&run);
    let required: Names = run
        .match_indices("${SIP_FRONT_")
        .filter_map(|(at, _)| {
            let name: String = run[at + 2..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            run[at + 2 + name.len()..].starts_with(":?").then_some(name)
        })
        .collect();
    assert!(required.contains("SIP_FRONT_TRUNK_NETWORKS"), "run requires the trunks' networks: {required:?}");

    let blocks = module("modules/sip_front");
    let task = block(&blocks, "resource", &["aws_ecs_task_definition", "front"]);
    let container = text(attr(&task.body, "container_definitions").expect("container_definitions"));
    let set = sip_front_names(&container);
    assert!(required.is_subset(&set), "the SIP front's container lacks {:?}", missing(&required, &set));
    assert!(set.contains("SIP_FRONT_WORKERS_SRV"), "on AWS the front finds the workers by their SRV name");
    let unread = missing(&set, &read);
    assert!(unread.is_empty(), "the SIP front's container sets {unread:?}, which run does not read");
    // The front listens on UDP only (kamailio.cfg: disable_tcp=yes): its security group opens
    // nothing else to the trunks.
    let config = std::fs::read_to_string(workspace().join("infra/sip-front/kamailio.cfg")).unwrap();
    assert!(config.lines().any(|l| l.trim() == "disable_tcp=yes"), "kamailio.cfg listens on TCP now");
    let group = block(&blocks, "resource", &["aws_security_group", "front"]);
    for ingress in group.body.blocks().filter(|b| b.identifier.as_str() == "ingress") {
        let protocol = text(attr(&ingress.body, "protocol").expect("protocol"));
        assert_eq!(protocol, "\"udp\"", "the front's security group opens {protocol}, where nothing listens");
    }

    let config_path = block(&blocks, "variable", &["config_path"]);
    let default = text(attr(&config_path.body, "default").expect("config_path has a default"));
    let default = default.trim_matches('"');
    assert!(default.ends_with("/kamailio.cfg"), "run writes a kamailio.cfg: {default}");
    let dockerfile = std::fs::read_to_string(workspace().join("infra/sip-front/Dockerfile")).unwrap();
    let dir = default.trim_end_matches("/kamailio.cfg");
    assert!(
        dockerfile.contains(&format!("ENV SIP_FRONT_CONFIG={default}")),
        "the image and the module must agree on SIP_FRONT_CONFIG ({default})"
    );
    assert!(
        dockerfile.lines().any(|l| l.contains("install -d -o kamailio") && l.trim_end().ends_with(dir)),
        "the image must give Kamailio's user {dir}, where run writes the configuration"
    );
}

/// Every block of `blocks`, nested ones too.
fn all_blocks(blocks: &[Block]) -> Vec<&Block> {
    let mut out = Vec::new();
    let mut stack: Vec<&Block> = blocks.iter().collect();
    while let Some(block) = stack.pop() {
        stack.extend(block.body.blocks());
        out.push(block);
    }
    out
}

/// Whether `code` names the metric `name` as a whole word (not as the prefix of another).
fn names_metric(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// The worker's metrics reach CloudWatch only through the metrics sidecar's selectors
/// (modules/media_pool): every `golos/media` metric an alarm, the dashboard or the
/// autoscaling policy uses is selected, and every selected metric is one the worker exposes.
/// A renamed metric would otherwise leave an alarm that can never fire.
#[test]
fn every_worker_metric_the_alarms_and_autoscaling_use_is_shipped_and_exposed() {
    let media_pool = module("modules/media_pool");
    let sidecar = text(local(&media_pool, "cwagent_config"));
    let selectors = sidecar.split("metric_selectors").nth(1).expect("metric_selectors in the sidecar's config");
    let selectors = &selectors[..selectors.find(']').expect("a list")];
    let selected: Names = selectors
        .match_indices("\"^")
        .map(|(at, _)| selectors[at + 2..].chars().take_while(|c| *c != '$').collect())
        .collect();
    assert!(selected.contains("concurrent_calls_active"), "the sidecar's selectors: {selected:?}");

    let observability = module("modules/observability");
    let mut used = Names::new();
    for block in all_blocks(&media_pool).into_iter().chain(all_blocks(&observability)) {
        let namespace = attr(&block.body, "namespace").map(text);
        if namespace.as_deref() == Some("\"golos/media\"") {
            let metric = attr(&block.body, "metric_name").map(text).expect("a golos/media metric_name");
            used.insert(metric.trim_matches('"').to_owned());
        }
    }
    let dashboard = text(
        attr(&block(&observability, "resource", &["aws_cloudwatch_dashboard", "golos"]).body, "dashboard_body")
            .unwrap(),
    );
    for (at, _) in dashboard.match_indices("\"golos/media\", \"") {
        let rest = &dashboard[at + "\"golos/media\", \"".len()..];
        used.insert(rest.chars().take_while(|c| *c != '"').collect());
    }
    assert!(used.contains("concurrent_calls_active") && used.contains("golos_sip_trunk_breaker_open"), "{used:?}");
    let unshipped = missing(&used, &selected);
    assert!(unshipped.is_empty(), "used but not shipped by the metrics sidecar: {unshipped:?}");

    let mut worker_code = String::new();
    for dir in ["media-pool/worker/src", "media-pool/sip/src"] {
        for entry in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "rs") {
                worker_code.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let unexposed: Vec<&String> = selected.iter().filter(|name| !names_metric(&worker_code, name)).collect();
    assert!(unexposed.is_empty(), "the sidecar selects metrics the worker does not expose: {unexposed:?}");
}
