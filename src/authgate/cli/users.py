"""``authgate users ...``: user administration from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from authgate.api.schemas import UserDTO
from authgate.cli.console import (
    ConfigOption,
    err,
    friendly_errors,
    load_settings,
    out,
    read_password,
    with_services,
)
from authgate.cli.output import (
    OutputFormat,
    OutputOption,
    add_row,
    print_json,
    print_table,
    stamp,
    table,
)
from authgate.container import Services
from authgate.security.principal import KNOWN_AUTHORITIES, ROLE_USER
from authgate.services.audit.events import OPERATOR
from authgate.services.user_fields import NewUser, UserChanges, UserView
from authgate.storage.paging import PageRequest, SortOrder

users_app = typer.Typer(help="Manage users.", no_args_is_help=True)

LoginArgument = Annotated[str, typer.Argument(help="The user's login.")]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@users_app.command("create")
def users_create(
    login: Annotated[str, typer.Option(help="Login (lower-cased).")],
    email: Annotated[str, typer.Option(help="E-mail address.")],
    role: Annotated[
        list[str] | None,
        typer.Option(
            help="ROLE_ADMIN, ROLE_ANALYST, ROLE_VIEWER or ROLE_USER; repeat for several "
            "(default ROLE_USER)."
        ),
    ] = None,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a user."""
    roles = frozenset(role or [ROLE_USER])
    unknown = roles - KNOWN_AUTHORITIES
    if unknown:
        err.print(f"[red]error:[/red] unknown role {sorted(unknown)[0]}")
        raise typer.Exit(1)
    password = read_password(password_stdin)
    with friendly_errors():
        user = with_services(
            load_settings(config),
            lambda services: services.users.create_user(
                NewUser(
                    login=login,
                    email=email,
                    password=password,
                    authorities=roles,
                    first_name=first_name,
                    last_name=last_name,
                )
            ),
        )
    out.print(f"created user {user.login} ({', '.join(sorted(user.authorities))})")


@users_app.command("list")
def users_list(output: OutputOption = OutputFormat.TABLE, config: ConfigOption = None) -> None:
    """List all users."""
    with friendly_errors():
        page = with_services(
            load_settings(config),
            lambda services: services.users.list_users(
                PageRequest(page=0, size=100_000, sort=(SortOrder("login"),))
            ),
        )
    if output is OutputFormat.JSON:
        print_json([UserDTO.of(user) for user in page.items])
        return
    listing = table("id", "login", "email", "roles", "active", "created")
    for user in page.items:
        add_row(
            listing,
            str(user.id),
            user.login,
            user.email,
            ", ".join(sorted(user.authorities)),
            "yes" if user.activated else "no",
            stamp(user.created_at),
        )
    print_table(listing)


@users_app.command("set-password")
def users_set_password(
    login: LoginArgument,
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Set a user's password; their existing tokens stop working."""
    password = read_password(password_stdin)
    with friendly_errors():
        with_services(load_settings(config), lambda s: s.users.set_password(login, password))
    out.print(f"password of {login.lower()} changed; their tokens are revoked")


@users_app.command("reset-tfa")
def users_reset_tfa(
    login: LoginArgument,
    config: ConfigOption = None,
) -> None:
    """Remove a user's second factor (a lost phone; the last admin locked out). Audited;
    the user is told by e-mail when SMTP is configured."""
    with friendly_errors():
        user = with_services(
            load_settings(config), lambda s: s.second_factor.reset(login, by=OPERATOR)
        )
    # The user as they were before the reset: whether there was a factor to remove.
    if user.second_factor is None:
        out.print(f"{user.login} had no second factor; they sign in with the password alone")
    else:
        out.print(f"second factor of {user.login} removed; they sign in with the password alone")


@users_app.command("deactivate")
def users_deactivate(
    login: LoginArgument,
    config: ConfigOption = None,
) -> None:
    """Deactivate a user: no more logins, existing tokens stop working."""
    with friendly_errors():
        with_services(
            load_settings(config), lambda s: s.users.deactivate(login, acting_user_id=None)
        )
    out.print(f"user {login.lower()} deactivated")


@users_app.command("reactivate")
def users_reactivate(
    login: LoginArgument,
    config: ConfigOption = None,
) -> None:
    """Reactivate a deactivated user. Their API keys stay suspended until each is
    re-enabled (with AUTHGATE_API_KEY_RESUME_ON_REACTIVATION, they work again at once);
    tokens issued before the deactivation stay dead."""
    settings = load_settings(config)
    with friendly_errors():
        with_services(
            settings,
            lambda s: s.users.update_user(login, UserChanges(activated=True), acting_user_id=None),
        )
    keys = "work again" if settings.api_keys.resume_on_reactivation else "stay suspended"
    out.print(f"user {login.lower()} reactivated; their suspended API keys {keys}")


@users_app.command("rename")
def users_rename(
    login: LoginArgument,
    new_login: Annotated[str, typer.Argument(help="The new login (lower-cased).")],
    config: ConfigOption = None,
) -> None:
    """Give a user another login. Their sessions end (tokens name the login); their API
    keys keep working, under the new login."""
    with friendly_errors():
        user = with_services(
            load_settings(config),
            lambda s: s.users.update_user(login, UserChanges(login=new_login), acting_user_id=None),
        )
    if user.login == login.strip().lower():
        out.print(f"user {user.login} already has that login")
        return
    out.print(f"user {login.strip().lower()} renamed to {user.login}; their sessions have ended")


@users_app.command("delete")
def users_delete(
    login: LoginArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete a user and their API keys (the last active admin cannot be deleted)."""
    if not yes and not typer.confirm(f"Delete user {login.lower()} and their API keys?"):
        err.print("nothing deleted")
        raise typer.Exit(1)
    with friendly_errors():
        with_services(
            load_settings(config), lambda s: s.users.delete_user(login, acting_user_id=None)
        )
    out.print(f"user {login.lower()} deleted")


@users_app.command("roles")
def users_roles(
    login: LoginArgument,
    add: Annotated[
        list[str] | None,
        typer.Option(
            "--add", help="Grant ROLE_ADMIN, ROLE_ANALYST, ROLE_VIEWER or ROLE_USER; repeat."
        ),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Take a role away; repeat.")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Show a user's roles, or change them with --add/--remove (effective at once, also
    for tokens already issued; the last active admin keeps ROLE_ADMIN)."""
    granted, taken = frozenset(add or ()), frozenset(remove or ())
    unknown = (granted | taken) - KNOWN_AUTHORITIES
    if unknown:
        err.print(
            f"[red]error:[/red] unknown role {sorted(unknown)[0]}; "
            f"use {' or '.join(sorted(KNOWN_AUTHORITIES))}"
        )
        raise typer.Exit(1)

    async def change(services: Services) -> UserView:
        user = await services.users.get_user(login)
        if not granted and not taken:
            return user
        roles = (user.authorities | granted) - taken
        return await services.users.update_user(
            login, UserChanges(authorities=roles), acting_user_id=None
        )

    with friendly_errors():
        user = with_services(load_settings(config), change)
    if output is OutputFormat.JSON:
        print_json(UserDTO.of(user))
        return
    out.print(f"{user.login}: {', '.join(sorted(user.authorities)) or 'no roles'}")


@users_app.command("reset-link")
def users_reset_link(
    login: LoginArgument,
    config: ConfigOption = None,
) -> None:
    """Print a single-use link (valid 24 hours) with which the user sets a password;
    it replaces any earlier link. For users created without a password when no SMTP
    server is configured. The link is a credential: hand it over privately."""
    settings = load_settings(config)
    with friendly_errors():
        user, issued = with_services(settings, lambda s: s.users.new_reset_key(login))
    if settings.http.public_url is None and settings.http.reset_page_url is None:
        # The link is made here, from this command's settings, not by the server: without
        # a public URL it names the host and port this command would serve on.
        err.print(
            "[yellow]note:[/yellow] AUTHGATE_PUBLIC_URL is not set, so the link starts with "
            f"{escape(settings.http.base_url)}; if users reach the server elsewhere, give "
            "this command the server's AUTHGATE_PUBLIC_URL (or its config file)."
        )
    out.print(f"reset link for {user.login}, valid until {stamp(issued.expires_at)}:")
    # Printed without markup or wrapping, so it can be copied whole.
    out.print(issued.link(settings.http.reset_page), markup=False, highlight=False, soft_wrap=True)
