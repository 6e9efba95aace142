"""User administration: create, update, deactivate, delete, reset passwords, bootstrap.

Rules live here so the REST API and the CLI enforce the same ones.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Final

from authgate.clock import Clock
from authgate.exceptions import Conflict, NotFound, ValidationFailed
from authgate.reasons import Reason
from authgate.security.passwords import PasswordPolicy
from authgate.security.principal import (
    ROLE_ADMIN,
    ROLE_USER,
    KeyReference,
    join_authorities,
    parse_authorities,
)
from authgate.services.account_notices import AccountNotices
from authgate.services.audit.events import EventType, current_request
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind, UnitOfWork
from authgate.services.owner_keys import (
    audit_owner_keys,
    resume_owner_keys,
    revoke_owner_keys,
    suspend_owner_keys,
)
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.ports import Database, UserRepo
from authgate.services.reset_keys import (
    RESET_KEY_TTL,
    IssuedResetKey,
    cancel_reset_link,
    issue_reset_key,
)
from authgate.services.sorting import require_sortable
from authgate.services.user_fields import (
    NewUser,
    UserChanges,
    UserView,
    authority_errors,
    email_errors,
    image_url_errors,
    login_errors,
    profile_errors,
)
from authgate.storage.errors import Conflict as StorageConflict
from authgate.storage.models import User
from authgate.storage.paging import Page, PageRequest
from authgate.storage.text import storable_text

log = logging.getLogger(__name__)

SYSTEM_ACTOR: Final = "system"
INITIAL_ADMIN_LOGIN: Final = "admin"
INITIAL_ADMIN_EMAIL: Final = "admin@localhost"


class UserService:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        hasher: AsyncPasswordHasher,
        policy: PasswordPolicy,
        clock: Clock,
        audit: AuditLog,
        notices: AccountNotices | None = None,
        resume_keys_on_reactivation: bool = False,
    ) -> None:
        self._db = db
        self._feed = feed
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._audit = audit
        self._notices = notices
        self._resume_keys_on_reactivation = resume_keys_on_reactivation

    async def list_users(
        self,
        request: PageRequest,
        *,
        login_contains: str | None = None,
        search: str | None = None,
        except_user_id: int | None = None,
    ) -> Page[UserView]:
        """A page of users; with ``login_contains``, only those whose login contains it
        (case-insensitive, UTMStack's ``?login=`` and ``/filter/{login}``); with
        ``search``, those whose login, e-mail or name contains it (v12's ``?search=``);
        never ``except_user_id`` (``/filter/{login}`` leaves the caller out)."""
        require_sortable(request, self._db.users.SORT_COLUMNS)
        fragment = login_contains.strip() if login_contains else None
        searched = search.strip() if search else None
        if any(text is not None and not storable_text(text) for text in (fragment, searched)):
            return Page(items=[], total=0, request=request)
        async with self._db.session() as session:
            users = self._db.users(session)
            total = await users.count(
                login_contains=fragment, search=searched, except_user_id=except_user_id
            )
            page = await users.page(
                request, login_contains=fragment, search=searched, except_user_id=except_user_id
            )
            items = [UserView.of(user) for user in page]
        return Page(items=items, total=total, request=request)

    async def get_user(self, login: str) -> UserView:
        async with self._db.session() as session:
            return UserView.of(await _existing(self._db.users(session), login))

    async def get_user_by_id(self, user_id: int) -> UserView:
        async with self._db.session() as session:
            user = await self._db.users(session).get(user_id)
        return UserView.of(_found(user))

    async def get_user_by_public_id(self, public_id: str) -> UserView:
        """The user v12's routes name by ``public_id`` (not a UUID: not found)."""
        async with self._db.session() as session:
            user = await self._db.users(session).by_public_id(public_id)
        return UserView.of(_found(user))

    async def new_reset_key(self, login: str) -> tuple[UserView, IssuedResetKey]:
        """A fresh single-use reset key for a user (replacing any pending one), for an
        admin to hand over (``authgate users reset-link``, the Settings UI)."""
        issued = issue_reset_key(self._clock())
        async with self._feed.unit_of_work() as work:
            user = await _existing(self._db.users(work.session), login)
            user.reset_key_hash = issued.digest
            user.reset_key_expires_at = issued.expires_at
            self._touched(work, user)
            view = UserView.of(user)
        self._audit.record(
            EventType.PASSWORD_RESET_REQUESTED,
            "success",
            details={"user": view.login, "delivery": "admin"},
        )
        return view, issued

    async def create_user(self, new: NewUser) -> UserView:
        """Create a user with a password (``new.password`` must be set)."""
        if new.password is None:
            raise ValueError("create_user needs a password; use invite_user without one")
        created, _ = await self._create(new, reset=None)
        return created

    async def invite_user(
        self, new: NewUser, *, valid_for: timedelta = RESET_KEY_TTL
    ) -> tuple[UserView, IssuedResetKey]:
        """Create a user without a usable password: inactive until the returned reset
        key (single use, valid for ``valid_for``) sets a password. The caller delivers
        the key (mail, or shown once to the admin)."""
        issued = issue_reset_key(self._clock(), valid_for=valid_for)
        created, _ = await self._create(new, reset=issued)
        return created, issued

    async def _create(
        self, new: NewUser, *, reset: IssuedResetKey | None
    ) -> tuple[UserView, IssuedResetKey | None]:
        login = new.login.strip().lower()
        email = new.email.strip().lower()
        errors = [
            *login_errors(login),
            *email_errors(email),
            *profile_errors(new.first_name, new.last_name, new.lang_key),
            *image_url_errors(new.image_url),
            *authority_errors(new.authorities),
        ]
        if errors:
            raise ValidationFailed(errors[0].message, field_errors=errors)
        if new.password is not None:
            self._policy.check(new.password, login=login, email=email, field="password")
            password_hash = await self._hasher.hash(new.password)
        else:
            # A random password nobody ever sees: the account has no usable password,
            # and a login attempt costs the same work as for any other user.
            password_hash = await self._hasher.hash(secrets.token_urlsafe(32))
        now = self._clock()
        by = acting_login()
        try:
            async with self._feed.unit_of_work() as work:
                users = self._db.users(work.session)
                if await users.name_taken(login):  # a login, or another user's e-mail
                    raise Conflict("Login name already used!", reason=Reason.LOGIN_EXISTS)
                if await users.name_taken(email):  # an e-mail, or another user's login
                    raise Conflict("Email is already in use!", reason=Reason.EMAIL_EXISTS)
                user = User(
                    login=login,
                    email=email,
                    first_name=new.first_name,
                    last_name=new.last_name,
                    lang_key=new.lang_key,
                    activated=new.activated and reset is None,
                    authorities=join_authorities(new.authorities),
                    password_hash=password_hash,
                    created_at=now,
                    updated_at=now,
                    password_changed_at=now if reset is None else None,
                    created_by=by,
                    last_modified_by=by,
                    image_url=new.image_url,
                    activation_pending=reset is not None,
                    reset_key_hash=reset.digest if reset is not None else None,
                    reset_key_expires_at=reset.expires_at if reset is not None else None,
                    initial_password=True,
                )
                users.add(user)
                await users.flush()
                created = UserView.of(user)
        except StorageConflict:  # a concurrent request created the same login or e-mail
            raise Conflict("Login name or email already used!", reason=Reason.USER_EXISTS) from None
        details: dict[str, object] = {
            "user": created.login,
            "authorities": sorted(created.authorities),
        }
        if reset is not None:
            details["withoutPassword"] = True
        self._audit.record(EventType.USER_CREATED, "success", details=details)
        return created, reset

    async def update_user(
        self, login: str, changes: UserChanges, *, acting_user_id: int | None
    ) -> UserView:
        """Change the user named ``login``. A new ``changes.login`` renames them (checked
        as at creation) and ends their sessions; a deactivation suspends their API keys,
        and a reactivation resumes them when ``resume_keys_on_reactivation`` is set."""
        errors = [
            # Only a new login is checked: a whole DTO sends the user's own back, which may
            # predate a rule (a login reserved since) and must not block other changes.
            *(
                login_errors(changes.login.strip().lower())
                if changes.login is not None and changes.renames(login.strip().lower())
                else []
            ),
            *(email_errors(changes.email.strip().lower()) if changes.email is not None else []),
            *profile_errors(changes.first_name, changes.last_name, changes.lang_key),
            *image_url_errors(changes.image_url),
            *(authority_errors(changes.authorities) if changes.authorities is not None else []),
        ]
        if errors:
            raise ValidationFailed(errors[0].message, field_errors=errors)
        try:
            async with self._feed.unit_of_work() as work:
                users = self._db.users(work.session)
                if changes.activated is False or changes.authorities is not None:
                    # Before the user's own row: two admins deactivating each other at
                    # once must not each count the other as the admin who remains.
                    await users.lock_active_admins()
                user = await _locked(users, login)
                was_active, old_login, old_email = user.activated, user.login, user.email
                await self._apply_changes(users, user, changes, acting_user_id=acting_user_id)
                suspended: list[KeyReference] = []
                resumed: list[KeyReference] = []
                keys = self._db.api_keys(work.session)
                if was_active and not user.activated:
                    suspended = await suspend_owner_keys(work, keys, user.id, now=self._clock())
                elif not was_active and user.activated and self._resume_keys_on_reactivation:
                    # UTMStack checks the owner per request, so its keys work again with
                    # the owner. By default they stay suspended until re-enabled one by one.
                    resumed = await resume_owner_keys(work, keys, user.id, now=self._clock())
                self._touched(work, user)
                await users.flush()
                updated = UserView.of(user)
        except StorageConflict:  # a concurrent request took the login or the e-mail
            if changes.renames(login.strip().lower()):
                message = "Login name or email already used!"
                raise Conflict(message, reason=Reason.USER_EXISTS) from None
            raise Conflict("Email is already in use!", reason=Reason.EMAIL_EXISTS) from None
        if self._notices is not None and updated.email != old_email:
            self._notices.email_changed(updated.login, old_email, updated.email)
        self._record_update(changes, updated, old_login, suspended=suspended, resumed=resumed)
        return updated

    def _record_update(
        self,
        changes: UserChanges,
        updated: UserView,
        old_login: str,
        *,
        suspended: list[KeyReference],
        resumed: list[KeyReference],
    ) -> None:
        """Audit an update: the user's event, then one event per key it reached."""
        renamed = updated.login != old_login
        changed = sorted(
            name
            for name, value in (
                ("login", changes.login if renamed else None),
                ("email", changes.email),
                ("firstName", changes.first_name),
                ("lastName", changes.last_name),
                ("langKey", changes.lang_key),
                ("activated", changes.activated),
                ("authorities", changes.authorities),
                ("imageUrl", changes.image_url),
            )
            if value is not None
        )
        details: dict[str, object] = {"user": updated.login, "changed": changed}
        if renamed:
            details["previousLogin"] = old_login
        if suspended:
            details["suspendedApiKeys"] = len(suspended)
        if resumed:
            details["resumedApiKeys"] = len(resumed)
        self._audit.record(
            EventType.USER_DEACTIVATED if changes.activated is False else EventType.USER_UPDATED,
            "success",
            details=details,
        )
        audit_owner_keys(self._audit, EventType.API_KEY_SUSPENDED, suspended, cause="deactivated")
        audit_owner_keys(self._audit, EventType.API_KEY_RESUMED, resumed, cause="reactivated")

    async def set_password(
        self, login: str, new_password: str, *, revoke_api_keys: bool = False
    ) -> None:
        """Replace a user's password (admin reset); all their tokens stop working, and
        with ``revoke_api_keys`` all their API keys too, in the same transaction."""
        async with self._db.session() as session:
            existing = await _existing(self._db.users(session), login)
        self._policy.check(
            new_password, login=existing.login, email=existing.email, field="newPassword"
        )
        password_hash = await self._hasher.hash(new_password)
        async with self._feed.unit_of_work() as work:
            user = await _locked(self._db.users(work.session), login)
            now = self._clock()
            user.password_hash = password_hash
            user.password_changed_at = now
            end_sessions(user, now)
            user.initial_password = True
            cancel_reset_link(user)
            revoked = (
                await revoke_owner_keys(work, self._db.api_keys(work.session), user.id, now=now)
                if revoke_api_keys
                else []
            )
            self._touched(work, user)
        details: dict[str, object] = {"user": user.login}
        if revoke_api_keys:
            details["revokedApiKeys"] = len(revoked)
        self._audit.record(EventType.PASSWORD_RESET, "success", details=details)
        audit_owner_keys(self._audit, EventType.API_KEY_REVOKED, revoked, cause="password_reset")

    async def deactivate(self, login: str, *, acting_user_id: int | None) -> UserView:
        return await self.update_user(
            login, UserChanges(activated=False), acting_user_id=acting_user_id
        )

    async def delete_user(self, login: str, *, acting_user_id: int | None) -> None:
        """Delete a user. The last active admin is checked before oneself, as UTMStack's
        UserService.deleteUser checks only that (its UI shows the message on a 400)."""
        async with self._feed.unit_of_work() as work:
            users = self._db.users(work.session)
            await users.lock_active_admins()  # the count below stays true until the commit
            user = await _locked(users, login)
            if _is_active_admin(user) and await users.count_active_admins() <= 1:
                raise Conflict(_LAST_ADMIN_DELETE, reason=Reason.LAST_ADMIN)
            if user.id == acting_user_id:
                raise Conflict("You cannot delete your own account.", reason=Reason.SELF_DELETE)
            await users.delete(user)
            work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
        self._audit.record(EventType.USER_DELETED, "success", details={"user": user.login})

    async def ensure_initial_admin(self, password: str | None) -> str | None:
        """Create user ``admin`` if there are no users at all.

        Returns the generated password when one was generated (to print once), else
        ``None``. A given password must pass the policy: never a default like "admin".
        """
        async with self._db.session() as session:
            if await self._db.users(session).count() > 0:
                if password is not None:
                    # Said, not silently ignored: an operator who set it to change the
                    # admin's password would otherwise believe it done.
                    log.warning(
                        "AUTHGATE_ADMIN_PASSWORD (or _FILE) is set but users exist already: "
                        "it only sets the first admin's password on the first start; use "
                        "`authgate users set-password` to change a password"
                    )
                return None
        generated = password is None
        chosen = password if password is not None else self._random_password()
        try:
            await self.create_user(
                NewUser(
                    login=INITIAL_ADMIN_LOGIN,
                    email=INITIAL_ADMIN_EMAIL,
                    password=chosen,
                    authorities=frozenset({ROLE_ADMIN, ROLE_USER}),
                    first_name="Administrator",
                )
            )
        except Conflict:  # another process bootstrapped at the same moment
            return None
        return chosen if generated else None

    def _random_password(self) -> str:
        """A random password the policy accepts: 24 characters (144 bits), or the
        minimum length if that is more; drawn again in the rare case that it contains
        the login "admin" (a random string from a list of passwords is not a worry)."""
        length = min(max(24, self._policy.min_length), self._policy.max_length)
        for _ in range(1000):
            candidate = secrets.token_urlsafe(96)[:length]
            problem = self._policy.problem(
                candidate, login=INITIAL_ADMIN_LOGIN, email=INITIAL_ADMIN_EMAIL
            )
            if problem is None:
                return candidate
        raise RuntimeError("no random password passes the password policy")  # unreachable

    async def _apply_changes(
        self, users: UserRepo, user: User, changes: UserChanges, *, acting_user_id: int | None
    ) -> None:
        # Counted before any change, while autoflush cannot yet see this user's new state.
        admins_before = await users.count_active_admins() if _is_active_admin(user) else None
        if changes.login is not None:
            await self._rename(users, user, changes.login.strip().lower())
        if changes.email is not None:
            email = changes.email.strip().lower()
            if email != user.email:
                if await users.name_taken(email, except_user_id=user.id):
                    raise Conflict("Email is already in use!", reason=Reason.EMAIL_EXISTS)
                cancel_reset_link(user)  # it may have gone to the old address
            user.email = email
        if changes.first_name is not None:
            user.first_name = changes.first_name or None
        if changes.last_name is not None:
            user.last_name = changes.last_name or None
        if changes.lang_key is not None:
            user.lang_key = changes.lang_key
        if changes.image_url is not None:
            user.image_url = changes.image_url or None
        if changes.authorities is not None:
            user.authorities = join_authorities(changes.authorities)
        # A pending user (invited, not yet activated) is stored inactive: deactivating
        # it must still end the invitation, or its link would activate it later.
        deactivating_pending = changes.activated is False and bool(user.activation_pending)
        if changes.activated is not None and (
            changes.activated != user.activated or deactivating_pending
        ):
            if not changes.activated and user.id == acting_user_id:
                raise Conflict(
                    "You cannot deactivate your own account.", reason=Reason.SELF_DEACTIVATE
                )
            user.activated = changes.activated
            # An admin's decision ends a pending first activation either way.
            user.activation_pending = False
            if not changes.activated:
                # Reactivation must not bring old sessions back, nor a reset link.
                end_sessions(user, self._clock())
                cancel_reset_link(user)
        if admins_before is not None and admins_before <= 1 and not _is_active_admin(user):
            raise Conflict(_LAST_ADMIN, reason=Reason.LAST_ADMIN)

    async def _rename(self, users: UserRepo, user: User, login: str) -> None:
        """Give ``user`` the (validated, lower-cased) ``login``, as UTMStack's
        UserService.updateUser does. Tokens carry the login as ``sub`` and forward-auth
        hands it upstream as the identity, so every session ends: none goes on under the
        old name. API keys are bound to the user id and present the new login (the user
        change drops the cached state on every worker and node)."""
        if login == user.login:
            return
        if await users.name_taken(login, except_user_id=user.id):  # or someone's e-mail
            raise Conflict("Login name already used!", reason=Reason.LOGIN_EXISTS)
        user.login = login
        end_sessions(user, self._clock())

    def _touched(self, work: UnitOfWork, user: User) -> None:
        user.updated_at = self._clock()
        user.last_modified_by = acting_login()
        work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))


_LAST_ADMIN = "At least one active administrator must remain."
_LAST_ADMIN_DELETE = "Cannot delete the last admin user."  # UTMStack's words


async def _existing(users: UserRepo, login: str) -> User:
    return _found(await users.by_login(login.strip().lower()))


def _found(user: User | None) -> User:
    """``user``, or ``NotFound`` when it was not there to read."""
    if user is None:
        raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
    return user


async def _locked(users: UserRepo, login: str) -> User:
    """The user, its row locked for the rest of the transaction (``UserRepo.locked``):
    a change that reaches the user's keys (suspend, revoke) must see every key a
    concurrent creation stores, and a creation must see the change (``ApiKeyService``)."""
    return _found(await users.locked((await _existing(users, login)).id))


def end_sessions(user: User, now: datetime) -> None:
    """End every session of ``user`` up to ``now``: tokens issued until then are refused
    and v12 sessions started before cannot refresh; none is kept (as a password change
    keeps its own)."""
    user.tokens_valid_after = now
    user.kept_session_jti = user.kept_session_cutoff = None


def _is_active_admin(user: User) -> bool:
    return user.activated and ROLE_ADMIN in parse_authorities(user.authorities)


def acting_login() -> str:
    """Who is changing a user, for ``createdBy``/``lastModifiedBy``: the caller's login,
    or "system" outside a request (the CLI, bootstrap), as JHipster records it."""
    request = current_request.get()
    principal = request.principal if request is not None else None
    return principal.login if principal is not None else SYSTEM_ACTOR
