# pragma version ~=0.4.3
"""
@title keeper_roles
@notice Keeper role for the protocol's automated actors (price feeds, liquidation, ADL), granted
        and revoked by the owner.
"""

from snekmate.auth import ownable

uses: ownable


event UpdateKeeper:
    keeper: indexed(address)
    status: bool


# @dev Accounts allowed to act as keepers.
is_keeper: public(HashMap[address, bool])


@external
def set_keeper(keeper: address, status: bool):
    """
    @notice Grants or revokes the keeper role.
    @dev Owner only.
    @param keeper The account.
    @param status True to grant, False to revoke.
    """
    ownable._check_owner()
    assert keeper != empty(address), "keeper_roles: zero address"
    self.is_keeper[keeper] = status
    log UpdateKeeper(keeper=keeper, status=status)


@internal
@view
def _check_keeper():
    assert self.is_keeper[msg.sender], "keeper_roles: caller is not a keeper"
