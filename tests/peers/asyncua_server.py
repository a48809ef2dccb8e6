"""An OPC UA server on the independent Python `asyncua` stack, for interop
tests. It serves a press in namespace urn:plantgate:asyncua:

  ns;s=Press.Counter   UInt32, +1 every --tick
  ns;i=1001            Double "Temperature", 20.0 + counter / 10
  ns;s=Press.Recipe    String "R-100"

Prints `READY` when it accepts connections and runs until killed.
--security basic256sha256 offers only Basic256Sha256 SignAndEncrypt, with
a self-signed certificate written into --cert-dir; --user NAME:PASSWORD
accepts only that login.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

URI = "urn:plantgate:asyncua"


class OneUser:
    def __init__(self, name, password):
        self.name = name
        self.password = password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--security", choices=["none", "basic256sha256"], default="none")
    p.add_argument("--user", default=None)
    p.add_argument("--cert-dir", default=".")
    p.add_argument("--tick", type=float, default=0.2)
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    if a.user:
        name, _, password = a.user.partition(":")
        server = Server(user_manager=OneUser(name, password))
    else:
        server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{a.port}/")
    server.set_server_name("plantgate asyncua peer")
    app_uri = "urn:plantgate:asyncua:server"
    await server.set_application_uri(app_uri)
    if a.security == "basic256sha256":
        cert_dir = Path(a.cert_dir)
        cert_dir.mkdir(parents=True, exist_ok=True)
        key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
        await setup_self_signed_certificate(
            key, cert, app_uri, "localhost",
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "DE", "organizationName": "plantgate tests",
             "commonName": "asyncua peer"},
        )
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if a.user:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    else:
        server.set_identity_tokens([ua.AnonymousIdentityToken])

    idx = await server.register_namespace(URI)
    press = await server.nodes.objects.add_object(ua.NodeId("Press", idx), "Press")
    counter = await press.add_variable(
        ua.NodeId("Press.Counter", idx), "Counter", ua.Variant(0, ua.VariantType.UInt32))
    temperature = await press.add_variable(ua.NodeId(1001, idx), "Temperature", 20.0)
    await press.add_variable(ua.NodeId("Press.Recipe", idx), "Recipe", "R-100")

    async with server:
        print("READY", flush=True)
        n = 0
        while True:
            await asyncio.sleep(a.tick)
            n += 1
            await counter.write_value(ua.Variant(n, ua.VariantType.UInt32))
            await temperature.write_value(20.0 + n / 10)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
