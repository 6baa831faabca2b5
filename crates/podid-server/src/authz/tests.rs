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
