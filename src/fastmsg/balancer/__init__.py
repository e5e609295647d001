"""fastmsg.Balancer: one send() over many receivers, by a routing strategy, with failover."""

from fastmsg.balancer._balancer import Balancer

__all__ = ["Balancer"]
