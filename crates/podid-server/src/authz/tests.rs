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
