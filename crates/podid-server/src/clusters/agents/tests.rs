use podid_api::ErrorKind;
use serde_json::json;

use super::*;

fn register(body: serde_json::Value) -> Result<AgentSettings, ApiError> {
    registered(&serde_json::from_value(body).unwrap())
}

fn settings(identity: AgentIdentity, service_account: &str, node_binding: bool) -> AgentSettings {
    AgentSettings {
        identity,
        service_account: service_account.to_owned(),
        node_binding,
    }
}

fn refusal(result: Result<AgentSettings, ApiError>) -> String {
    let e = result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    e.message
}

#[test]
fn registrations_default_to_key_identity_without_binding() {
    assert_eq!(
        register(json!({"name": "c"})).unwrap(),
        settings(AgentIdentity::Key, "podid-system/podid-agent", false)
    );
    assert_eq!(
        register(json!({"agentIdentity": "key", "nodeBinding": false})).unwrap(),
        settings(AgentIdentity::Key, "podid-system/podid-agent", false)
    );
}

#[test]
fn token_identity_turns_node_binding_on_unless_told() {
    assert_eq!(
        register(json!({"agentIdentity": "token"})).unwrap(),
        settings(AgentIdentity::Token, "podid-system/podid-agent", true)
    );
    assert_eq!(
        register(json!({
            "agentIdentity": "token",
            "agentServiceAccount": "kube-system/node-agent.v2",
            "nodeBinding": false
        }))
        .unwrap(),
        settings(AgentIdentity::Token, "kube-system/node-agent.v2", false)
    );
}

#[test]
fn key_identity_with_node_binding_is_refused() {
    let message = refusal(register(json!({"nodeBinding": true})));
    assert!(
        message.starts_with("nodeBinding true needs agentIdentity token"),
        "{message}"
    );
    refusal(register(
        json!({"agentIdentity": "key", "nodeBinding": true}),
    ));
}

#[test]
fn agent_service_accounts_are_two_kubernetes_names() {
    for good in ["podid-system/podid-agent", "a/b", "ns/my.sa"] {
        assert!(check_service_account(good).is_ok(), "{good}");
    }
    for bad in [
        "podid-agent",
        "podid-system/",
        "/podid-agent",
        "a/b/c",
        "Podid-System/podid-agent",
        "podid.system/podid-agent",
        "ns/Agent",
        "ns/a_b",
        "ns/..",
    ] {
        let message = refusal(register(json!({"agentServiceAccount": bad})));
        assert!(
            message.starts_with("agentServiceAccount '"),
            "{bad}: {message}"
        );
    }
}

use crate::broker::node_binding::sample_cluster as cluster;

fn update(current: &Cluster, body: serde_json::Value) -> Result<AgentSettings, ApiError> {
    updated(&serde_json::from_value(body).unwrap(), current)
}

#[test]
fn switching_to_token_turns_binding_on_and_back_to_key_turns_it_off() {
    use AgentIdentity::{Key, Token};
    const DEFAULT: &str = "podid-system/podid-agent";
    let cases = [
        (
            (Key, false),
            json!({"agentIdentity": "token"}),
            (Token, DEFAULT, true),
        ),
        (
            (Key, false),
            json!({"agentIdentity": "token", "nodeBinding": false}),
            (Token, DEFAULT, false),
        ),
        (
            (Token, false),
            json!({"agentServiceAccount": "ops/agent"}),
            (Token, "ops/agent", false),
        ),
        (
            (Token, false),
            json!({"nodeBinding": true}),
            (Token, DEFAULT, true),
        ),
        (
            (Token, true),
            json!({"agentIdentity": "key"}),
            (Key, DEFAULT, false),
        ),
        (
            (Token, true),
            json!({"issuer": "https://other.test"}),
            (Token, DEFAULT, true),
        ),
    ];
    for ((identity, binding), body, (to, account, bound)) in cases {
        assert_eq!(
            update(&cluster(identity, binding), body.clone()).unwrap(),
            settings(to, account, bound),
            "{identity:?} {binding} + {body}"
        );
    }
}

#[test]
fn node_binding_on_a_key_cluster_is_refused() {
    let key = cluster(AgentIdentity::Key, false);
    refusal(update(&key, json!({"nodeBinding": true})));
    let bound = cluster(AgentIdentity::Token, true);
    refusal(update(
        &bound,
        json!({"agentIdentity": "key", "nodeBinding": true}),
    ));
}
