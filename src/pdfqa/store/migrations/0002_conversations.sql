-- Conversations over one or several uploads, their answered messages, and feedback on answers.
CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_user_idx ON conversations (user_id, updated_at DESC);

CREATE TABLE conversation_uploads (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    upload_id       uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    position        integer NOT NULL,
    PRIMARY KEY (conversation_id, upload_id)
);
CREATE INDEX conversation_uploads_upload_idx ON conversation_uploads (upload_id);

-- One row per question and its complete answer: nothing is stored for an interrupted answer.
CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    question        text NOT NULL,
    query           text NOT NULL,
    answer          text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('generated', 'extractive', 'not_found')),
    sources         jsonb NOT NULL,
    citations       jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at);

-- A vote keeps its own copy of what was asked, answered and retrieved: an evaluation set.
CREATE TABLE feedback (
    message_id  uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    vote        text NOT NULL CHECK (vote IN ('up', 'down')),
    comment     text,
    question    text NOT NULL,
    answer      text NOT NULL,
    chunk_ids   text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_user_idx ON feedback (user_id, updated_at);
