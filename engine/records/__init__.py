"""Reading what happened: the audit trace of a ticket, instance search, exports and replay."""
