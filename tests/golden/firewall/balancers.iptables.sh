#!/bin/sh
# mxgate lockdown for iptables, from mxgate.conf (mxgate firewall --format iptables).
#
# Run as root: sh FILE
# iptables-restore --noflush makes the chain MXGATE-INPUT, or empties and refills it,
# and leaves every other chain alone; the jump to it is put first in INPUT only when
# missing.  The same for IPv6 with ip6tables.  Running it again changes nothing.
# Allowed clients RETURN to INPUT, where your own rules still apply; the rest is dropped.
# Undo: iptables -D INPUT -j MXGATE-INPUT && iptables -F MXGATE-INPUT && iptables -X MXGATE-INPUT
# (and the same with ip6tables).
set -e

# IPv4
iptables-restore -w --noflush <<'MXGATE_EOF'
*filter
:MXGATE-INPUT - [0:0]
# TCP port 25, IPv4, any local address: connector "Behind HAProxy", and the balancers (proxy-protocol-from)
-A MXGATE-INPUT -p tcp --dport 25 -s 10.9.0.10/31 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -s 192.0.2.0/24 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -j DROP
# TCP port 2525, IPv4, any local address: connector "Office", and the balancers (proxy-protocol-from)
-A MXGATE-INPUT -p tcp --dport 2525 -s 10.0.0.0/16 -j RETURN
-A MXGATE-INPUT -p tcp --dport 2525 -s 10.9.0.10/31 -j RETURN
-A MXGATE-INPUT -p tcp --dport 2525 -j DROP
COMMIT
MXGATE_EOF
iptables -w -C INPUT -j MXGATE-INPUT 2>/dev/null || iptables -w -I INPUT 1 -j MXGATE-INPUT

# IPv6
ip6tables-restore -w --noflush <<'MXGATE_EOF'
*filter
:MXGATE-INPUT - [0:0]
# TCP port 25, IPv6, any local address: connector "Behind HAProxy", and the balancers (proxy-protocol-from)
-A MXGATE-INPUT -p tcp --dport 25 -s 2001:db8:b::/64 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -s 2001:db8:c::/48 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -j DROP
COMMIT
MXGATE_EOF
ip6tables -w -C INPUT -j MXGATE-INPUT 2>/dev/null || ip6tables -w -I INPUT 1 -j MXGATE-INPUT
