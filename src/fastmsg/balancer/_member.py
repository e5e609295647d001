"""One receiver of a Balancer: its endpoint and options, its Sender, and what the Balancer keeps
about it between looks."""

from collections import deque


class Member:
    __slots__ = ("endpoint", "spec", "weight", "zone", "tier", "id", "sender", "up", "was_up", "pending",
                 "samples", "fed_age", "carried", "failovers", "moved")

    def __init__(self, endpoint, spec, weight, zone, tier, member_id, sender):
        self.endpoint = endpoint  # resolved: an address, or an ipc path
        self.spec = spec          # as the caller gave it (a host name stands for several members)
        self.weight = weight
        self.zone = zone
        self.tier = tier
        self.id = member_id
        self.sender = sender
        self.up = False           # as the Router was last told
        self.was_up = False       # its Sender has been up: a loss of it now is a failover
        # (number, key, token) of each message not yet settled, when keys or tokens are kept:
        # number is the Sender's queued_count once the message was queued.
        self.pending = deque()
        self.samples = 0          # round-trip samples already given to the Router
        self.fed_age = 0          # the age of an unanswered batch last given to the Router
        self.carried = [0, 0]     # queued and settled counts of the Senders it had before
        self.failovers = 0        # times its Sender was lost and its messages moved
        self.moved = 0            # messages taken back from it and sent elsewhere
