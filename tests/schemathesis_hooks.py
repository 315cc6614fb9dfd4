"""Hooks for the contract test (tests/it/contract.rs): schemathesis has no serializer
for tus's `application/offset+octet-stream`, the body of every PATCH; it is bytes."""

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8")}
