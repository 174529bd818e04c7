"""WeChat / WeCom channels: callback crypto, safe XML, the platform API client, the customer
service (kf), Official Account and WeCom app channels, group robots, and the outbound sender the
campaigns' worker delivers through. See DESIGN.md §3.

This package knows the wire; the core only ever sees ``bot.types.InboundMessage`` and ``Reply``.
"""
