"""ssh's ProxyCommand for a test sshd on a port of its own: stdin/stdout <-> a TCP address.

Ray's cluster launcher has no ssh port setting, but it passes `auth.ssh_proxy_command` to ssh
and to rsync's ssh. Usage: python tcp_relay.py HOST PORT (the test only gives it 127.0.0.1).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    conn = socket.create_connection((host, port))
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(conn, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is conn:
                data = conn.recv(65536)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            else:
                data = os.read(sys.stdin.fileno(), 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    selector.unregister(sys.stdin.fileno())
                    continue
                conn.sendall(data)


if __name__ == "__main__":
    main()
