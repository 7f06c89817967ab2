"""Test guest for the sandbox: echoes each value, except `spin`, which loops forever (the CPU
budget must stop it), and `hog`, which allocates until the memory cap stops it."""

from sluice_sdk import Record, Transform, Writer


class Sandbox(Transform):
    """Echoes, spins or hogs memory, as each record's value says."""

    def process(self, record: Record, out: Writer) -> None:
        value = record.value or b""
        if value == b"spin":
            while True:
                pass
        if value == b"hog":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        out.write(value)
