"""Generated from protos/edge/v1/router.proto by scripts/gen_proto.sh; do not edit the *_pb2* files."""
