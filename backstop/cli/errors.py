"""A click command that ends every expected failure in one sentence: a chain that does not answer
or breaks the connection, a file that cannot be written. Never a traceback, never a silent exit
(click takes an EPIPE OSError for its own stdout closing and exits 1 without a word)."""

from __future__ import annotations

import click

# Exceptions raised by ape, its providers or requests when no chain answers, matched by name so
# that this module does not import ape.
_CHAIN_ERRORS = {"ProviderError", "ProviderNotConnectedError", "NetworkError", "ConnectionError", "ConnectTimeout", "NodeConnectionError"}


class Command(click.Command):
    """click.Command with the failures above as one-line ClickExceptions."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except OSError as error:
            if _is_chain_error(error):
                raise click.ClickException(f"the chain stopped answering: {_first_line(error)}") from None
            where = f" ({error.filename})" if getattr(error, "filename", None) else ""
            raise click.ClickException(f"cannot read or write a file{where}: {error.strerror or error}") from None
        except Exception as error:
            if type(error).__name__ == "NodeConnectionError":  # mid-run: the node went away or refused a request
                raise click.ClickException(_first_line(error)) from None
            if _is_chain_error(error):
                raise click.ClickException(f"no chain reachable ({_first_line(error)}); start one or pass --network with a live RPC") from None
            raise


def _is_chain_error(error: BaseException) -> bool:
    return any(kind.__name__ in _CHAIN_ERRORS for kind in type(error).__mro__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
