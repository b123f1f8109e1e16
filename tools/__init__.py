"""doorkeep.tools — the doorkeep command for devices, owners, hubs and requesters."""
