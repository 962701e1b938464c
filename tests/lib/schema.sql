-- schema.sql - the original's Prisma tables that naiberd reads, as
-- `prisma migrate` creates them: quoted camelCase columns, TEXT ids,
-- TIMESTAMP(3) without time zone holding UTC, String[] as nullable TEXT[],
-- foreign keys on "userId" with ON DELETE CASCADE.  Loaded by the unit and
-- integration tests into a throwaway server (tests/lib/pg.sh, pg.mjs).
--
-- Two departures, for fixtures only: Prisma fills "id" (cuid) and
-- "updatedAt" (@updatedAt) client-side, so its tables have no database
-- default for them; here they default so fixtures may leave them out.

CREATE TYPE "Gender" AS ENUM ('MALE', 'FEMALE', 'NON_BINARY',
    'PREFER_NOT_TO_SAY');

CREATE TABLE "users" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "name" TEXT NOT NULL,
    "age" INTEGER,
    "phone" TEXT NOT NULL,
    "gender" "Gender",
    "interests" TEXT[],
    "dislikes" TEXT[],
    "isFirstCall" BOOLEAN NOT NULL DEFAULT true,
    "lastCallAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "users_phone_key" ON "users"("phone");

CREATE TABLE "conversation_summaries" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "userId" TEXT NOT NULL,
    "conversationId" TEXT NOT NULL,
    "summaryText" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "conversation_summaries_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "conversation_summaries_conversationId_key"
    ON "conversation_summaries"("conversationId");
CREATE INDEX "conversation_summaries_userId_createdAt_idx"
    ON "conversation_summaries"("userId", "createdAt");

CREATE TABLE "user_health_conditions" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "userId" TEXT NOT NULL,
    "condition" TEXT NOT NULL,
    "severity" TEXT,
    "notes" TEXT,
    "diagnosedAt" TIMESTAMP(3),
    "isActive" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "user_health_conditions_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "user_health_conditions_userId_isActive_idx"
    ON "user_health_conditions"("userId", "isActive");

CREATE TABLE "user_medications" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "userId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "dosage" TEXT,
    "frequency" TEXT,
    "notes" TEXT,
    "startedAt" TIMESTAMP(3),
    "isActive" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "user_medications_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "user_medications_userId_isActive_idx"
    ON "user_medications"("userId", "isActive");

ALTER TABLE "conversation_summaries"
    ADD CONSTRAINT "conversation_summaries_userId_fkey"
    FOREIGN KEY ("userId") REFERENCES "users"("id")
    ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE "user_health_conditions"
    ADD CONSTRAINT "user_health_conditions_userId_fkey"
    FOREIGN KEY ("userId") REFERENCES "users"("id")
    ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE "user_medications"
    ADD CONSTRAINT "user_medications_userId_fkey"
    FOREIGN KEY ("userId") REFERENCES "users"("id")
    ON DELETE CASCADE ON UPDATE CASCADE;
