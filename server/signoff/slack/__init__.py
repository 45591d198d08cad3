"""Approvals in Slack (docs/slack.md).

A `slack_interactive` webhook posts each waiting action to a Slack channel as a Block Kit
message with Approve and Reject buttons (chat.postMessage, through the webhook outbox, so
delivery is durable and retried), and keeps that message current as the action changes
(chat.update): votes, the decision, an expiry, a cancellation, whoever made them and from
wherever. A click comes back to `POST /slack/actions` on the HTTP listener, verified with
the app's signing secret, and is one SubmitDecision by the principal the auth config maps
the Slack user to.

    messages.py   the messages, pure: Block Kit from an action and its votes
    callbacks.py  POST /slack/actions: verify, parse, answer at once, then vote
    delivery.py   the outbox sender: post or update the message of an action
    store.py      where each action's message is (channel, ts)
    app.py        the pieces together, for the server
"""
