"""Which scopes may call which method: the one table the edge checks every call against.

A credential carries scopes (the JWT's `scope` claim, space-separated, or `scp`, a list);
a call is allowed when the credential holds any scope listed for its method. A method not in
the table is refused to everyone (a new RPC is closed until it is given a scope here; a test
checks that every RPC in protos/ has one).

- storefront: what a shop's gateway does for a member it has signed in: browse, redeem,
  read and cancel the member's own redemptions, balances, statements, transfers,
  lottery draws, daily check-ins.
- payments:   the payment service confirming the cash part of a points + cash redemption.
- earning:    the mall's order and task systems crediting (and reversing) points.
- fulfilment: the warehouse moving physical redemptions on after COMMITTED: packing,
              shipped, delivered. Returns are decided by the operator only (they refund
              points and money: the mall's staff, not the warehouse, decide that); it follows
              the event stream (WatchEvents).
- merchant:   a shop accepting virtual codes: verifies a pool code and consumes it, once
              (CodeService.VerifyCode, ConsumeCode); nothing else.
- operator:   the mall's staff: catalogue (items, products, descriptive updates,
              retirement), stock and its locations, low-stock thresholds and physical
              counts (StockCountService), code pools (ImportCodes, GetCodePool),
              campaigns, lotteries, members, corrections, tiers, and everything the reads and
              reports show.
- cards:      (no scope of its own) operator issues and manages member cards; storefront
              opens a card for its member and reports it lost; storefront and merchant
              (a till) check a card and resolve it to its member.
- reports:    finance and auditors: read-only reports, reads and the audit trail (also
              stock levels and movements, ListLowStockItems and GetStockCount).
"""

from __future__ import annotations

STOREFRONT = "storefront"
PAYMENTS = "payments"
EARNING = "earning"
FULFILMENT = "fulfilment"
MERCHANT = "merchant"
OPERATOR = "operator"
REPORTS = "reports"
ALL = (STOREFRONT, PAYMENTS, EARNING, FULFILMENT, MERCHANT, OPERATOR, REPORTS)

_CATALOG = "/loyalty.v1.CatalogService/"
_CAMPAIGN = "/loyalty.v1.CampaignService/"
_MEMBER = "/loyalty.v1.MemberService/"
_REDEMPTION = "/loyalty.v1.RedemptionService/"
_AUDIT = "/loyalty.v1.AuditService/"
_CODE = "/loyalty.v1.CodeService/"
_FULFILMENT = "/loyalty.v1.FulfilmentService/"
_EVENTS = "/loyalty.v1.EventService/"
_STOCK = "/loyalty.v1.StockService/"
_LOCATION = "/loyalty.v1.LocationService/"
_STOCK_COUNTS = "/loyalty.v1.StockCountService/"
_LOTTERY = "/loyalty.v1.LotteryService/"
_CHECKIN = "/loyalty.v1.CheckInService/"
_CARD = "/loyalty.v1.CardService/"
_EARN_RULES = "/loyalty.v1.EarnRuleService/"

_BROWSE = frozenset({STOREFRONT, OPERATOR, REPORTS})
_MEMBER_SELF = frozenset({STOREFRONT, OPERATOR})
_OPERATOR = frozenset({OPERATOR})
_EARN = frozenset({EARNING, OPERATOR})
_WAREHOUSE = frozenset({FULFILMENT, OPERATOR})
# Stock levels and movements: the mall's back office, not the storefront.
_STOCK_READ = frozenset({OPERATOR, REPORTS, FULFILMENT})
_REPORTS = frozenset({OPERATOR, REPORTS})

SCOPES_BY_METHOD: dict[str, frozenset[str]] = {
    _CATALOG + "CreateItem": _OPERATOR,
    _CATALOG + "GetItem": _BROWSE,
    _CATALOG + "AdjustStock": _OPERATOR,
    _CATALOG + "CreateProduct": _OPERATOR,
    _CATALOG + "GetProduct": _BROWSE,
    _CATALOG + "ListItems": _BROWSE,
    _CATALOG + "UpdateItem": _OPERATOR,
    _CATALOG + "RetireItem": _OPERATOR,
    _STOCK + "GetStockLevels": _STOCK_READ,
    _STOCK + "ListStockMovements": _STOCK_READ,
    _CAMPAIGN + "CreateCampaign": _OPERATOR,
    _CAMPAIGN + "GetCampaign": _BROWSE,
    _CAMPAIGN + "ListCampaigns": _BROWSE,
    _CAMPAIGN + "UpdateCampaign": _OPERATOR,
    _CAMPAIGN + "EndCampaign": _OPERATOR,
    _MEMBER + "CreateMember": _MEMBER_SELF,
    _MEMBER + "GetMember": _MEMBER_SELF,
    _MEMBER + "LookupMember": _OPERATOR,
    _MEMBER + "GetBalance": _MEMBER_SELF,
    _MEMBER + "EarnPoints": _EARN,
    _MEMBER + "EarnForPurchase": _EARN,
    _MEMBER + "EarnForTask": _EARN,
    _MEMBER + "ReversePurchase": _EARN,
    _MEMBER + "AdjustPoints": _OPERATOR,
    _MEMBER + "FreezeMember": _OPERATOR,
    _MEMBER + "UnfreezeMember": _OPERATOR,
    _MEMBER + "SetManualTier": _OPERATOR,
    _MEMBER + "EvaluateTier": _OPERATOR,
    _MEMBER + "AddBeneficiary": _MEMBER_SELF,
    _MEMBER + "RemoveBeneficiary": _MEMBER_SELF,
    _MEMBER + "ListBeneficiaries": _MEMBER_SELF,
    _MEMBER + "TransferPoints": _MEMBER_SELF,
    _MEMBER + "ListLedgerEntries": frozenset({STOREFRONT, OPERATOR, REPORTS}),
    _MEMBER + "GetLiabilityReport": frozenset({OPERATOR, REPORTS}),
    _REDEMPTION + "Redeem": frozenset({STOREFRONT}),
    _REDEMPTION + "GetRedemption": frozenset({STOREFRONT, PAYMENTS, OPERATOR, REPORTS}),
    _REDEMPTION + "CancelRedemption": _MEMBER_SELF,
    _REDEMPTION + "ConfirmPayment": frozenset({PAYMENTS}),
    _REDEMPTION + "ListRedemptions": frozenset({STOREFRONT, OPERATOR, REPORTS}),
    _REDEMPTION + "GetBalance": _MEMBER_SELF,
    _REDEMPTION + "LookupMember": _MEMBER_SELF,
    _REDEMPTION + "ListOffers": _BROWSE,
    _REDEMPTION + "GetOffer": _BROWSE,
    _REDEMPTION + "QuotePrice": _MEMBER_SELF,
    _REDEMPTION + "ListLedgerEntries": frozenset({STOREFRONT, OPERATOR, REPORTS}),
    _AUDIT + "ListAuditEvents": frozenset({OPERATOR, REPORTS}),
    _CODE + "ImportCodes": _OPERATOR,
    _CODE + "GetCodePool": _OPERATOR,
    _CODE + "VerifyCode": frozenset({MERCHANT}),
    _CODE + "ConsumeCode": frozenset({MERCHANT}),
    _FULFILMENT + "StartPacking": _WAREHOUSE,
    _FULFILMENT + "MarkShipped": _WAREHOUSE,
    _FULFILMENT + "MarkDelivered": _WAREHOUSE,
    _FULFILMENT + "RequestReturn": _MEMBER_SELF,
    _FULFILMENT + "AcceptReturn": _OPERATOR,
    _FULFILMENT + "RejectReturn": _OPERATOR,
    _EVENTS + "WatchEvents": frozenset({FULFILMENT, OPERATOR, REPORTS}),
    _LOCATION + "CreateLocation": _OPERATOR,
    _LOCATION + "ListLocations": _BROWSE,
    _LOCATION + "TransferStock": _OPERATOR,
    _STOCK_COUNTS + "SetLowStockThreshold": _OPERATOR,
    _STOCK_COUNTS + "ListLowStockItems": _REPORTS,
    _STOCK_COUNTS + "SubmitStockCount": _OPERATOR,
    _STOCK_COUNTS + "GetStockCount": _REPORTS,
    _LOTTERY + "CreateLottery": _OPERATOR,
    _LOTTERY + "GetLottery": _BROWSE,
    _LOTTERY + "ListLotteries": _BROWSE,
    _LOTTERY + "Draw": frozenset({STOREFRONT}),
    _LOTTERY + "GetDraw": frozenset({STOREFRONT, OPERATOR, REPORTS}),
    _CHECKIN + "CheckIn": frozenset({STOREFRONT}),
    _CHECKIN + "GetCheckInStatus": frozenset({STOREFRONT, OPERATOR, REPORTS}),
    # Member cards: the operator issues and manages them; a member reports their own card
    # lost through the storefront; a till (storefront or merchant) checks and resolves one.
    _CARD + "CreateCardType": _OPERATOR,
    _CARD + "IssueCards": _OPERATOR,
    _CARD + "ExportCards": _OPERATOR,
    # Operators (a service desk) only: card numbers are sequential with a check digit, not a
    # secret, so a member opening "any issued card" could take a tier's card by guessing.
    _CARD + "OpenCard": _OPERATOR,
    _CARD + "ReportCardLost": _MEMBER_SELF,
    _CARD + "UnlockCard": _OPERATOR,
    _CARD + "ReplaceCard": _OPERATOR,
    _CARD + "CheckCard": frozenset({STOREFRONT, MERCHANT, OPERATOR}),
    _CARD + "ResolveCard": frozenset({STOREFRONT, MERCHANT, OPERATOR}),
    _EARN_RULES + "CreateEarnRule": _OPERATOR,
    _EARN_RULES + "GetEarnRule": frozenset({OPERATOR, REPORTS}),
    _EARN_RULES + "ListEarnRules": frozenset({OPERATOR, REPORTS}),
    _EARN_RULES + "EndEarnRule": _OPERATOR,
    _EARN_RULES + "PreviewEarn": frozenset({EARNING, OPERATOR}),
}


def allowed(method: str, held: frozenset[str]) -> bool:
    """Whether a credential holding `held` may call `method` ('/package.Service/Method')."""
    needed = SCOPES_BY_METHOD.get(method)
    return needed is not None and not needed.isdisjoint(held)


def needed_for(method: str) -> frozenset[str]:
    return SCOPES_BY_METHOD.get(method, frozenset())
