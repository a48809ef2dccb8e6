"""An OPC UA server on the independent Python `asyncua` stack, for interop
tests. It serves a press in namespace urn:plantgate:asyncua:

  ns;s=Press.Counter   UInt32, +1 every --tick
  ns;i=1001            Double "Temperature", 20.0 + counter / 10
  ns;s=Press.Recipe    String "R-100"

and a line whose values never change (for golden `opcua browse` output):
a string, a LocalizedText, a Double, an enumeration, a string array, an
Int32 array of 120 values, a standard structure (Range) and one of the
server's own (PressRecipe).

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
from asyncua.common.structures104 import new_enum, new_struct, new_struct_field
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


async def add_line(server, idx):
    recipe_type, _ = await new_struct(server, idx, "PressRecipe", [
        new_struct_field("Name", ua.VariantType.String),
        new_struct_field("Strokes", ua.VariantType.UInt32),
    ])
    mode_type = await new_enum(server, idx, "LineMode", ["Off", "Setup", "Production"])
    await server.load_data_type_definitions()
    line = await server.nodes.objects.add_object(ua.NodeId("Line", idx), "Line")

    def node(name):
        return ua.NodeId(f"Line.{name}", idx)

    await line.add_variable(node("Name"), "Name", "Line 1")
    await line.add_variable(
        node("Description"), "Description",
        ua.Variant(ua.LocalizedText(Text="Hydraulic press line", Locale="en"), ua.VariantType.LocalizedText))
    await line.add_variable(node("Speed"), "Speed", ua.Variant(12.5, ua.VariantType.Double))
    await line.add_variable(
        node("Mode"), "Mode", ua.Variant(2, ua.VariantType.Int32), datatype=mode_type.nodeid)
    await line.add_variable(
        node("Shifts"), "Shifts",
        ua.Variant(["early", "late", "night"], ua.VariantType.String))
    await line.add_variable(
        node("Setpoints"), "Setpoints",
        ua.Variant(list(range(1, 121)), ua.VariantType.Int32))
    await line.add_variable(
        node("Limits"), "Limits",
        ua.Variant(ua.Range(Low=0.0, High=250.0), ua.VariantType.ExtensionObject),
        datatype=ua.NodeId(ua.ObjectIds.Range))
    await line.add_variable(
        node("Recipe"), "Recipe",
        ua.Variant(ua.PressRecipe(Name="R-100", Strokes=12), ua.VariantType.ExtensionObject),
        datatype=recipe_type.nodeid)


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
    await add_line(server, idx)

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
