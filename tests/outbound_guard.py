"""Runs a Python script with every non-loopback connection refused and logged.

``python tests/outbound_guard.py LOG SCRIPT``: patches the socket layer (connect, connect_ex, sendto and
name resolution) so that only loopback addresses and Unix sockets are reachable, appends each refused
attempt to LOG, then runs SCRIPT as ``__main__``. Used by tests/test_app_offline.py.
"""

import errno
import ipaddress
import os
import runpy
import socket
import sys

LOG_PATH, SCRIPT = sys.argv[1], sys.argv[2]
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host) -> bool:
    if host is None or host in LOCAL_NAMES:  # None: getaddrinfo's "this host" for a listening socket
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: resolving it would be the first outbound packet


def _refuse(what: str, target) -> OSError:
    with open(LOG_PATH, "a") as log:
        log.write(f"{what} {target!r}\n")
    return OSError(errno.ENETUNREACH, f"outbound connection blocked by the test: {what} {target!r}")


def _guarded_connect(original, what):
    def guarded(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise _refuse(what, address)
        return original(self, address, *args)

    return guarded


def _guarded_sendto(original):
    def guarded(self, data, *args):
        address = args[-1]
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise _refuse("sendto", address)
        return original(self, data, *args)

    return guarded


_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, str(_refuse("getaddrinfo", host)))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect(socket.socket.connect, "connect")
socket.socket.connect_ex = _guarded_connect(socket.socket.connect_ex, "connect_ex")
socket.socket.sendto = _guarded_sendto(socket.socket.sendto)
socket.getaddrinfo = _guarded_getaddrinfo
sys.argv = [SCRIPT]
sys.path[0] = os.path.dirname(os.path.abspath(SCRIPT))  # as `python SCRIPT` would have it
runpy.run_path(SCRIPT, run_name="__main__")
