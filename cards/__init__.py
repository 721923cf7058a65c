"""Member cards: card types, numbers issued in batches for printing, and each card's life
(opened for a member, lost, unlocked, replaced). Calls go down: this package uses points
(the member's tier floor), auditlog and common; nothing here knows gRPC."""
