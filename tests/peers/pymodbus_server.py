#!/usr/bin/env python3
"""A Modbus server on pymodbus, an independent stack, for plantgate's interop tests.

Usage: pymodbus_server.py (--tcp PORT | --rtu DEVICE) --data FILE.json [--unit N]
                          [--silent-unit N]

FILE.json lists blocks per table, each [address, [values...]] with 0-based
protocol addresses: {"holding": [[0, [1, 2]]], "input": [...], "coils":
[[0, [true]]], "discrete": [...]}. Addresses outside the blocks answer
ILLEGAL DATA ADDRESS. Prints READY once it serves.
"""
import argparse
import asyncio
import json
import logging
import sys

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def blocks(entries, datatype):
    # pymodbus wants every table non-empty: park a filler far from the tests.
    entries = entries or [[60000, [0]]]
    return [SimData(address=a, values=list(v), datatype=datatype) for a, v in entries]


async def main():
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int)
    where.add_argument("--rtu")
    parser.add_argument("--data", required=True)
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--parity", default="N", choices=["N", "E", "O"])
    parser.add_argument(
        "--silent-unit", type=int, help="never answer this unit id, as an absent slave on a bus"
    )
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    with open(args.data, encoding="utf-8") as f:
        data = json.load(f)
    device = SimDevice(
        args.unit,
        simdata=(
            blocks(data.get("coils", []), DataType.BITS),
            blocks(data.get("discrete", []), DataType.BITS),
            blocks(data.get("holding", []), DataType.REGISTERS),
            blocks(data.get("input", []), DataType.REGISTERS),
        ),
    )
    if args.tcp is not None:
        server = ModbusTcpServer(device, address=("127.0.0.1", args.tcp))
    else:
        def trace(sending, packet):
            # On a real bus an absent unit is silent: drop what "it" would say.
            if sending and args.silent_unit is not None and packet[:1] == bytes([args.silent_unit]):
                return b""
            return packet

        server = ModbusSerialServer(
            device, port=args.rtu, baudrate=args.baud, parity=args.parity, trace_packet=trace
        )
    await server.serve_forever(background=True)
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
