"""WeChat / WeCom channels: callback crypto, safe XML, the platform API client, and (next) the kf,
Official Account, WeCom app, group robot and JSON webhook channels. See DESIGN.md §3.

This package knows the wire; the core only ever sees ``bot.types.InboundMessage`` and ``Reply``.
"""
