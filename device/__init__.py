"""doorkeep.device — the on-device runtime vendors embed.

Data flows frame → ring → motion gate → detector → event → publisher / vault; each stage is one module named after it.
"""
