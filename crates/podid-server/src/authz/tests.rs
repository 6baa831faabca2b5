use super::*;

#[test]
fn roles_allow_what_they_should() {
    use Operation::*;
    assert!(
        Role::Admin.allows(CreatePodIdentityAssociation)
            && Role::Admin.allows(AssumeRoleForPodIdentity)
    );
    for op in [
        DescribePodIdentityAssociation,
        ListPodIdentityAssociations,
        ListTagsForResource,
        DescribeCluster,
        ListClusters,
    ] {
        assert!(Role::Reader.allows(op), "{op:?}");
        assert!(!Role::Node.allows(op), "{op:?}");
    }
    for op in [
        CreatePodIdentityAssociation,
        UpdatePodIdentityAssociation,
        DeletePodIdentityAssociation,
        TagResource,
        UntagResource,
        RegisterCluster,
        UpdateCluster,
        DeregisterCluster,
        AssumeRoleForPodIdentity,
    ] {
        assert!(!Role::Reader.allows(op), "{op:?}");
    }
    assert!(Role::Node.allows(AssumeRoleForPodIdentity));
    assert!(!Role::Node.allows(CreatePodIdentityAssociation));
    // The change feed: every role (agents follow it with node keys).
    for role in [Role::Admin, Role::Reader, Role::Node] {
        assert!(role.allows(ListAssociationChanges), "{role:?}");
    }
}

/// Every operation for every role, through `authorise`: the verdict and the
/// refusal's wire name and message, written out as literals (EKS's operation
/// names; the keys file's role names).
#[test]
fn authorise_answers_each_role_and_operation() {
    use Operation::*;
    // (operation, its name, admin, reader, node)
    let matrix = [
        (
            CreatePodIdentityAssociation,
            "CreatePodIdentityAssociation",
            true,
            false,
            false,
        ),
        (
            DescribePodIdentityAssociation,
            "DescribePodIdentityAssociation",
            true,
            true,
            false,
        ),
        (
            ListPodIdentityAssociations,
            "ListPodIdentityAssociations",
            true,
            true,
            false,
        ),
        (
            UpdatePodIdentityAssociation,
            "UpdatePodIdentityAssociation",
            true,
            false,
            false,
        ),
        (
            DeletePodIdentityAssociation,
            "DeletePodIdentityAssociation",
            true,
            false,
            false,
        ),
        (TagResource, "TagResource", true, false, false),
        (UntagResource, "UntagResource", true, false, false),
        (
            ListTagsForResource,
            "ListTagsForResource",
            true,
            true,
            false,
        ),
        (RegisterCluster, "RegisterCluster", true, false, false),
        (DescribeCluster, "DescribeCluster", true, true, false),
        (ListClusters, "ListClusters", true, true, false),
        (UpdateCluster, "UpdateCluster", true, false, false),
        (DeregisterCluster, "DeregisterCluster", true, false, false),
        (
            AssumeRoleForPodIdentity,
            "AssumeRoleForPodIdentity",
            true,
            false,
            true,
        ),
        (ListAuditEvents, "ListAuditEvents", true, true, false),
        (
            ListAssociationChanges,
            "ListAssociationChanges",
            true,
            true,
            true,
        ),
    ];
    for (operation, name, admin, reader, node) in matrix {
        for (role, role_name, allowed) in [
            (Role::Admin, "admin", admin),
            (Role::Reader, "reader", reader),
            (Role::Node, "node", node),
        ] {
            let principal = Principal {
                access_key_id: "AKIDROLETEST".into(),
                role,
                clusters: Clusters::All,
                node: None,
            };
            match principal.authorise(operation) {
                Ok(()) => assert!(allowed, "{role_name} must not call {name}"),
                Err(e) => {
                    assert!(!allowed, "{role_name} must be allowed to call {name}");
                    assert_eq!(e.kind.name(), "AccessDeniedException");
                    assert_eq!(e.kind.status(), 403);
                    assert_eq!(
                        e.message,
                        format!(
                            "key AKIDROLETEST (role {role_name}) is not allowed to call {name}"
                        )
                    );
                }
            }
        }
    }
    assert_eq!(Principal::anonymous().authorise(ListAuditEvents), Ok(()));
}

/// The service each route is signed for (issue 13: `eks-auth` for
/// AssumeRoleForPodIdentity, `eks` for the association API, the cluster
/// registry and the rest).
#[test]
fn each_route_has_its_signing_service() {
    use routes::signing_service;
    assert_eq!(
        signing_service("/clusters/blue/assume-role-for-pod-identity"),
        "eks-auth"
    );
    for path in [
        "/clusters/blue/pod-identity-associations",
        "/clusters/blue/pod-identity-associations/a-0123456789abcdefg",
        "/clusters/blue/assume-role-for-pod-identity/",
        "/clusters/assume-role-for-pod-identity",
        "/x/clusters/blue/assume-role-for-pod-identity",
        "/tags/arn",
        "/podid/v1/clusters",
        "/podid/v1/clusters/blue",
        "/podid/v1/clusters/blue/changes",
        "/podid/v1/audit",
        "/",
        "",
    ] {
        assert_eq!(signing_service(path), "eks", "{path}");
    }
}

/// The clusters each route names, decoded as axum's `Path` decodes them.
#[test]
fn each_route_names_its_clusters() {
    use routes::{clusters_named, Named};
    let named = |method: http::Method, uri: &str, body: &str| {
        let uri: http::Uri = uri.parse().unwrap();
        match clusters_named(&method, &uri, body.as_bytes()) {
            Named::Clusters(names) => Some(
                names
                    .into_iter()
                    .map(|n| n.into_owned())
                    .collect::<Vec<_>>(),
            ),
            Named::Every => Some(vec!["*".to_owned()]),
            Named::Unknown => None,
        }
    };
    let one = |n: &str| Some(vec![n.to_owned()]);
    use http::Method as M;
    let arn = "arn%3Aaws%3Aeks%3Aus-east-1%3A111122223333%3Apodidentityassociation%2Fblue%2Fa-1";
    let cases = [
        (
            M::GET,
            "/clusters/blue/pod-identity-associations".to_owned(),
            "",
            one("blue"),
        ),
        (
            M::POST,
            "/clusters/b%20x/pod-identity-associations/a-1".to_owned(),
            "",
            one("b x"),
        ),
        (
            M::POST,
            "/clusters/blue/assume-role-for-pod-identity".to_owned(),
            "",
            one("blue"),
        ),
        (
            M::GET,
            "/clusters/%FF/pod-identity-associations".to_owned(),
            "",
            None,
        ),
        (M::GET, "/clusters/blue".to_owned(), "", None),
        (M::GET, format!("/tags/{arn}"), "", one("blue")),
        (
            M::GET,
            "/tags/arn:aws:eks:r:a:podidentityassociation/blue/a-1".to_owned(),
            "",
            None,
        ),
        (
            M::GET,
            "/tags/arn%3Aaws%3Aeks%3Ar%3Aa%3Acluster%2Fblue".to_owned(),
            "",
            None,
        ),
        (
            M::POST,
            "/podid/v1/clusters".to_owned(),
            r#"{"name":"blue"}"#,
            one("blue"),
        ),
        (
            M::POST,
            "/podid/v1/clusters".to_owned(),
            r#"{"issuer":"https://i"}"#,
            None,
        ),
        (
            M::GET,
            "/podid/v1/clusters".to_owned(),
            "",
            Some(vec!["*".to_owned()]),
        ),
        (
            M::DELETE,
            "/podid/v1/clusters/blue".to_owned(),
            "",
            one("blue"),
        ),
        (
            M::GET,
            "/podid/v1/clusters/b%20x/changes?after=3".to_owned(),
            "",
            one("b x"),
        ),
        (
            M::GET,
            "/podid/v1/clusters/blue/changes/x".to_owned(),
            "",
            None,
        ),
        (
            M::GET,
            "/podid/v1/audit?cluster=blue&cluster=b+x".to_owned(),
            "",
            Some(vec!["blue".to_owned(), "b x".to_owned()]),
        ),
        (
            M::GET,
            "/podid/v1/audit?namespace=x".to_owned(),
            "",
            Some(vec!["*".to_owned()]),
        ),
        (M::GET, "/healthz".to_owned(), "", None),
    ];
    for (method, uri, body, expected) in cases {
        assert_eq!(
            named(method.clone(), &uri, body),
            expected,
            "{method} {uri} {body}"
        );
    }
}

#[test]
fn clusters_allow_their_names_only() {
    assert!(Clusters::All.allows("anything"));
    let only = Clusters::Only(std::sync::Arc::from(["blue".to_owned()]));
    assert!(only.allows("blue"));
    assert!(!only.allows("green") && !only.allows("Blue") && !only.allows(""));
}

/// `Operation::ALL` holds each operation once: a match without a wildcard
/// (a new variant fails to compile here until it is counted).
#[test]
fn all_operations_are_listed_once() {
    let position = |op: Operation| match op {
        Operation::CreatePodIdentityAssociation => 0,
        Operation::DescribePodIdentityAssociation => 1,
        Operation::ListPodIdentityAssociations => 2,
        Operation::UpdatePodIdentityAssociation => 3,
        Operation::DeletePodIdentityAssociation => 4,
        Operation::TagResource => 5,
        Operation::UntagResource => 6,
        Operation::ListTagsForResource => 7,
        Operation::RegisterCluster => 8,
        Operation::DescribeCluster => 9,
        Operation::ListClusters => 10,
        Operation::UpdateCluster => 11,
        Operation::DeregisterCluster => 12,
        Operation::AssumeRoleForPodIdentity => 13,
        Operation::ListAuditEvents => 14,
        Operation::ListAssociationChanges => 15,
    };
    for (i, op) in Operation::ALL.iter().enumerate() {
        assert_eq!(position(*op), i, "{op:?}");
    }
}
