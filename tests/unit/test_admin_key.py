"""The admin key and gRPC TLS of ``tritonforge serve``, and the SDK's ``admin_key=``: the parts
that need no running server (tests/integration/test_admin_api.py runs them against the real one)."""

import pytest
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

import client.admin
from client import AsyncDetectionClient, ClientConfigError, DetectionClient, PermissionDeniedError
from client.errors import translate
from generator.cli import cli
from generator.errors import UsageError
from generator.serve import admin
from generator.serve.server import TritonServer
from generator.serve.tls import GrpcTLS, grpc_tls

KEY = "k" * 20
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PKEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def test_the_client_names_the_same_headers_as_the_server():
    assert client.admin.ADMIN_HEADER == admin.ADMIN_HEADER
    assert client.admin.GRPC_ADMIN_HEADER == admin.GRPC_ADMIN_HEADER
    assert [client.admin.header_for(p) for p in ("grpc", "http")] == [admin.header_for(p) for p in ("grpc", "http")]


def test_restricted_args_use_the_format_tritonserver_parses():
    http, grpc = admin.restricted_args(KEY)
    for arg, option in ((http, "--http-restricted-api"), (grpc, "--grpc-restricted-protocol")):
        name, value = arg.split("=", 1)
        apis, setting = value.split(":", 1)
        assert name == option and apis.split(",") == list(admin.RESTRICTED)
        assert setting == f"{admin.ADMIN_HEADER}={KEY}"
    assert not {"inference", "health", "metadata", "model-config"} & set(admin.RESTRICTED)


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False), ("example.org", False),
])
def test_loopback_hosts(host, loopback):
    assert admin.is_loopback(host) is loopback


def test_a_key_is_generated_off_loopback_only():
    assert admin.admin_key_for("127.0.0.1", None) == (None, False)
    key, generated = admin.admin_key_for("0.0.0.0", None)
    assert generated and len(key) >= 40 and admin.check_key(key) == key
    assert admin.admin_key_for("0.0.0.0", None)[0] != key
    assert admin.admin_key_for("127.0.0.1", KEY) == (KEY, False)  # asked for on loopback: applied
    assert admin.admin_key_for("10.0.0.1", KEY) == (KEY, False)


@pytest.mark.parametrize("key,message", [
    ("short", "must be at least 16 characters, got 5"),
    ("with a space in the key", "printable ASCII characters without spaces"),
    ("ключ" * 5, "printable ASCII characters without spaces"),
])
def test_weak_or_unsendable_keys_are_refused(key, message):
    with pytest.raises(UsageError, match=message):
        admin.admin_key_for("0.0.0.0", key)


def test_notes_show_a_generated_key_and_never_a_chosen_one():
    generated = admin.admin_notes(KEY, True, "10.0.0.1:8000")
    text = "\n".join(generated)
    assert "generated admin key" in text and KEY in text
    assert f"{admin.ADMIN_HEADER}: {KEY}" in text and f"{admin.GRPC_ADMIN_HEADER}: {KEY}" in text
    assert f"curl -X POST -H '{admin.ADMIN_HEADER}: {KEY}' http://10.0.0.1:8000/v2/repository/index" in text
    assert f'admin_key="{KEY}"' in text
    chosen = "\n".join(admin.admin_notes(KEY, False, "10.0.0.1:8000"))
    assert KEY not in chosen and "<key>" in chosen and "generated" not in chosen
    assert admin.admin_notes(None, False, "127.0.0.1:8000") == []


def _pem(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grpc_tls_options(tmp_path):
    cert, key, root = _pem(tmp_path, "c.pem", CERT), _pem(tmp_path, "k.pem", PKEY), _pem(tmp_path, "ca.pem", CERT)
    assert grpc_tls(None, None) is None
    plain = grpc_tls(cert, key)
    assert plain == GrpcTLS(cert, key) and not plain.mutual
    assert plain.args() == ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
    mutual = grpc_tls(str(cert), str(key), str(root))
    assert mutual.mutual and mutual.args() == ["--grpc-use-ssl-mutual=true", f"--grpc-server-cert={cert}",
                                               f"--grpc-server-key={key}", f"--grpc-root-cert={root}"]


@pytest.mark.parametrize("which,message", [
    (dict(key=None), "gRPC TLS needs --grpc-tls-key too"),
    (dict(cert=None), "gRPC TLS needs --grpc-tls-cert too"),
    (dict(cert=None, key=None, root="c.pem"), "gRPC TLS needs --grpc-tls-cert and --grpc-tls-key too"),
    (dict(cert="missing.pem"), "--grpc-tls-cert: file not found: {tmp}/missing.pem"),
    (dict(key="."), "--grpc-tls-key: not a file: {tmp}"),
    (dict(key="c.pem"), "--grpc-tls-key: {tmp}/c.pem is not a PEM file holding a private key"),
    (dict(root="k.pem"), "--grpc-tls-root: {tmp}/k.pem is not a PEM file holding a certificate"),
])
def test_grpc_tls_refusals_name_the_option_and_file(tmp_path, monkeypatch, which, message):
    monkeypatch.chdir(tmp_path)
    files = dict(cert=_pem(tmp_path, "c.pem", CERT), key=_pem(tmp_path, "k.pem", PKEY), root=None)
    files.update(which)
    with pytest.raises(UsageError) as info:
        grpc_tls(files["cert"], files["key"], files["root"])
    assert message.format(tmp=tmp_path) in str(info.value)


def test_server_command_carries_the_key_and_tls(tmp_path):
    tls = grpc_tls(_pem(tmp_path, "c.pem", CERT), _pem(tmp_path, "k.pem", PKEY))
    server = TritonServer(tmp_path, 1, 2, 3, admin_key=KEY, grpc_tls=tls)
    cmd = server.command(server.install())
    assert all(arg in cmd for arg in admin.restricted_args(KEY) + tls.args())
    plain = TritonServer(tmp_path, 1, 2, 3)  # how other code builds it: unchanged
    assert not any("restricted" in arg or "ssl" in arg for arg in plain.command(plain.install()))


@pytest.mark.parametrize("args,env,message", [
    (["--admin-key", "short"], {}, "--admin-key (or TRITONFORGE_ADMIN_KEY) must be at least 16 characters"),
    ([], {"TRITONFORGE_ADMIN_KEY": "short"}, "--admin-key (or TRITONFORGE_ADMIN_KEY) must be at least 16"),
    (["--grpc-tls-cert", "nope.pem", "--grpc-tls-key", "k.pem"], {}, "--grpc-tls-cert: file not found"),
    (["--grpc-tls-cert", "c.pem"], {}, "gRPC TLS needs --grpc-tls-key too"),
])
def test_serve_refuses_bad_protection_options_before_starting(tmp_path, monkeypatch, args, env, message):
    monkeypatch.chdir(tmp_path)
    _pem(tmp_path, "c.pem", CERT), _pem(tmp_path, "k.pem", PKEY)
    # the repository does not exist: the options are refused before the server would notice
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "no-repo"), *args], env=env)
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Triton" not in r.output


@pytest.mark.parametrize("cls", [DetectionClient, AsyncDetectionClient])
@pytest.mark.parametrize("url,header", [("grpc://h", admin.GRPC_ADMIN_HEADER), ("http://h", admin.ADMIN_HEADER)])
def test_sdk_sends_the_admin_key_under_the_protocols_header(cls, url, header):
    c = cls(url, admin_key=KEY, headers={"X-Other": "v"})
    assert c.options.wire_headers()[header] == KEY and len(c.options.wire_headers()) == 2
    assert KEY not in repr(c) and KEY not in repr(c.options)
    same = cls(url, admin_key=KEY, headers={admin.ADMIN_HEADER.upper(): KEY})  # given twice, equal: sent once
    assert same.options.wire_headers() == {header.lower() if "grpc" in url else header: KEY}


@pytest.mark.parametrize("kwargs,message", [
    (dict(admin_key=KEY, headers={admin.ADMIN_HEADER: "other"}), "give different admin keys"),
    (dict(admin_key=KEY, headers={admin.GRPC_ADMIN_HEADER: "other"}), "give different admin keys"),
    (dict(admin_key=""), "admin_key must be a non-empty string"),
    (dict(admin_key="a key"), "admin_key may hold only printable ASCII"),
])
def test_sdk_refuses_conflicting_or_bad_admin_keys(kwargs, message):
    with pytest.raises(ClientConfigError, match=message):
        DetectionClient("h", **kwargs)


def test_a_refused_admin_call_says_to_pass_the_admin_key():
    grpc = InferenceServerException(f"This protocol is restricted, expecting header '{admin.GRPC_ADMIN_HEADER}'",
                                    status="StatusCode.UNAVAILABLE")
    http = InferenceServerException(f"This API is restricted, expecting header '{admin.ADMIN_HEADER}'", status="403")
    for exc in (grpc, http):
        error = translate(exc, "grpc server at h:1", "shared-memory registration", "m")
        assert type(error) is PermissionDeniedError and not error.retryable
        assert "shared-memory registration refused" in str(error) and "admin_key=" in str(error)
    foreign = translate(InferenceServerException("This API is restricted, expecting header 'x-token'", status="403"),
                        "http server at h:1", "x", "m")
    assert type(foreign) is PermissionDeniedError and "admin_key=" not in str(foreign)
