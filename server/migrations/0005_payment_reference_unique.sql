-- One payment confirms one redemption: a payment processor's reference, once it has
-- confirmed a redemption (ConfirmPayment), cannot confirm another. The guard is here, not
-- in a check before the write, so two confirmations racing with one reference for two
-- redemptions end with exactly one confirmed (flashsale/lifecycle.py turns the loser's
-- unique violation into ALREADY_EXISTS). Partial: points-only redemptions and those not
-- yet paid have no reference.
--
-- Should it fail on existing duplicates, two redemptions were confirmed with one payment
-- before the rule: that is for finance to settle by hand, not for a migration to hide.
CREATE UNIQUE INDEX redemptions_payment_reference ON redemptions (payment_reference)
    WHERE payment_reference IS NOT NULL;
