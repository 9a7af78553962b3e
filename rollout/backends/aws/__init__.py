"""The AWS path: EC2 and Auto Scaling nodes, ELBv2 target groups, AMI bakes.

- :mod:`rollout.backends.aws.session`: boto3 clients (standard credential chain, retry
  config) and the translation of AWS errors into rollout errors.
- :mod:`rollout.backends.aws.images`: the AMI image store (AMIs found by their tags).
- :mod:`rollout.backends.aws.asg`: Auto Scaling group membership and launch templates.
- :mod:`rollout.backends.aws.builder`: the AMI builder of the bake pipeline (builder
  instance, image); :mod:`rollout.backends.aws.ami` its AMI calls.

The drivers themselves are :mod:`rollout.backends.aws.provider` and
:mod:`rollout.backends.aws.elbv2`.
"""

# Tag keys shared by nodes and AMIs. Reap and phoenix find nodes by them, so
# every writer goes through these constants.
TAG_NAME = "Name"
TAG_ROLE = "rollout:role"
TAG_ENV = "rollout:env"
TAG_IMAGE_ID = "rollout:image-id"
TAG_IMAGE_VERSION = "rollout:image-version"
TAG_ROLLOUT_ID = "rollout:rollout-id"
TAG_CREATED_BY = "rollout:created-by"
TAG_ASG = "rollout:asg"  # the group a node must be an in-service member of
TAG_BUILDER = "rollout:builder"  # on bake builder instances: the image id baked
CREATED_BY = "rollout"

# AMI tags (the image store). The version key differs from the node's on purpose:
# an AMI *is* the version, a node *runs* an image version.
TAG_VERSION = "rollout:version"
TAG_PARENT = "rollout:parent"
TAG_VERIFIED = "rollout:verified"
TAG_CREATED_AT = "rollout:created-at"
TAG_MANIFEST_PREFIX = "rollout:m:"
