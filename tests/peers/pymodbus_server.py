#!/usr/bin/env python3
"""A Modbus server on pymodbus, an independent stack, for plantgate's interop tests.

Usage: pymodbus_server.py (--tcp PORT | --rtu DEVICE) --data FILE.json [--unit N ...]
                          [--silent-unit N]

FILE.json lists blocks per table, each [address, [values...]] with 0-based
protocol addresses: {"holding": [[0, [1, 2]]], "input": [...], "coils":
[[0, [true]]], "discrete": [...]}. Every --unit (default 1) serves the same
data. Addresses outside the blocks answer ILLEGAL DATA ADDRESS. Prints
READY once it serves.

Control channel: one command per line on stdin, each answered by one line
on stdout once it is in force:
  exception UNIT TABLE ADDRESS CODE  a read of UNIT's TABLE (holding, input,
                                     coils, discrete) that covers ADDRESS is
                                     answered with exception CODE -> OK
  fault UNIT KIND                    UNIT's replies are spoiled: garbage,
                                     wrong-unit, wrong-transaction,
                                     wrong-function, bad-length (TCP), bad-crc
                                     (RTU), silent, or none -> OK
  clear                              no exceptions, no faults -> OK
  count UNIT                         -> COUNT <requests> <exception replies>
"""
import argparse
import asyncio
import json
import logging
import sys
import threading
from collections import Counter

from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

TABLES = {"coils": 1, "discrete": 2, "holding": 3, "input": 4}
# A reply to a read of one table, sent as if it came from another.
OTHER_FUNCTION = {1: 2, 2: 1, 3: 4, 4: 3}
FAULTS = {"garbage", "wrong-unit", "wrong-transaction", "wrong-function", "bad-length",
          "bad-crc", "silent", "none"}


def blocks(entries, datatype):
    # pymodbus wants every table non-empty: park a filler far from the tests.
    entries = entries or [[60000, [0]]]
    return [SimData(address=a, values=list(v), datatype=datatype) for a, v in entries]


class Behaviour:
    """What the test asked for, shared by the control thread and the server."""

    def __init__(self, rtu):
        self.rtu = rtu
        self.lock = threading.Lock()
        self.exceptions = {}  # (unit, function, address) -> code
        self.faults = {}  # unit -> kind
        self.requests = Counter()
        self.exception_replies = Counter()
        self.pending = {}  # (unit, transaction) -> (function, address, count)
        # Set by on_pdu for the packet pdu_send frames right after it.
        self.packet_fault = None

    def on_pdu(self, sending, pdu):
        with self.lock:
            if not sending:
                self.requests[pdu.dev_id] += 1
                self.pending[(pdu.dev_id, pdu.transaction_id)] = (
                    pdu.function_code, pdu.address, pdu.count)
                return pdu
            request = self.pending.pop((pdu.dev_id, pdu.transaction_id), None)
            if request is not None:
                function, address, count = request
                for (unit, fn, at), code in self.exceptions.items():
                    if unit == pdu.dev_id and fn == function and address <= at < address + count:
                        pdu = ExceptionResponse(function, code, device_id=pdu.dev_id,
                                                transaction=pdu.transaction_id)
                        break
            if pdu.function_code & 0x80:
                self.exception_replies[pdu.dev_id] += 1
            fault = self.faults.get(pdu.dev_id)
            self.packet_fault = None
            if fault == "wrong-unit":
                pdu.dev_id = (pdu.dev_id + 40) % 248
            elif fault == "wrong-transaction":
                pdu.transaction_id = (pdu.transaction_id + 1000) % 65536
            elif fault == "wrong-function" and not pdu.function_code & 0x80:
                pdu.function_code = OTHER_FUNCTION.get(pdu.function_code, pdu.function_code)
            elif fault in ("garbage", "bad-length", "bad-crc", "silent"):
                self.packet_fault = fault
            return pdu

    def on_packet(self, sending, packet):
        if not sending:
            return packet
        with self.lock:
            fault, self.packet_fault = self.packet_fault, None
        if fault == "silent":
            # On a real bus an absent unit is silent: drop what "it" would say.
            return b""
        if fault == "garbage":
            # Bytes of no frame: on TCP a header whose protocol id is not 0
            # and whose length runs far past what follows.
            return b"\x13\x37\xde\xad\xbe\xef" if self.rtu else b"\x13\x37\xde\xad\xbe\xef\x00\x42"
        if fault == "bad-length" and not self.rtu:
            # One byte short in the MBAP length field.
            length = int.from_bytes(packet[4:6], "big") - 1
            return packet[:4] + length.to_bytes(2, "big") + packet[6:]
        if fault == "bad-crc" and self.rtu:
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        return packet

    def command(self, line):
        words = line.split()
        if not words:
            return None
        with self.lock:
            if words[0] == "exception" and len(words) == 5:
                unit, table, address, code = words[1:]
                self.exceptions[(int(unit), TABLES[table], int(address))] = int(code, 0)
                return "OK"
            if words[0] == "fault" and len(words) == 3 and words[2] in FAULTS:
                self.faults[int(words[1])] = words[2]
                return "OK"
            if words[0] == "clear":
                self.exceptions.clear()
                self.faults.clear()
                return "OK"
            if words[0] == "count" and len(words) == 2:
                unit = int(words[1])
                return f"COUNT {self.requests[unit]} {self.exception_replies[unit]}"
        return f"ERROR unknown command {line.strip()!r}"


def control(behaviour):
    for line in sys.stdin:
        answer = behaviour.command(line)
        if answer is not None:
            print(answer, flush=True)


async def main():
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int)
    where.add_argument("--rtu")
    parser.add_argument("--data", required=True)
    parser.add_argument("--unit", type=int, action="append")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--parity", default="N", choices=["N", "E", "O"])
    parser.add_argument(
        "--silent-unit", type=int, help="never answer this unit id, as an absent slave on a bus"
    )
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with open(args.data, encoding="utf-8") as f:
        data = json.load(f)
    devices = [
        SimDevice(
            unit,
            simdata=(
                blocks(data.get("coils", []), DataType.BITS),
                blocks(data.get("discrete", []), DataType.BITS),
                blocks(data.get("holding", []), DataType.REGISTERS),
                blocks(data.get("input", []), DataType.REGISTERS),
            ),
        )
        for unit in (args.unit or [1])
    ]
    behaviour = Behaviour(rtu=args.rtu is not None)
    if args.silent_unit is not None:
        behaviour.faults[args.silent_unit] = "silent"
    traces = {"trace_pdu": behaviour.on_pdu, "trace_packet": behaviour.on_packet}
    if args.tcp is not None:
        server = ModbusTcpServer(devices, address=("127.0.0.1", args.tcp), **traces)
    else:
        server = ModbusSerialServer(
            devices, port=args.rtu, baudrate=args.baud, parity=args.parity, **traces
        )
    await server.serve_forever(background=True)
    threading.Thread(target=control, args=(behaviour,), daemon=True).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
